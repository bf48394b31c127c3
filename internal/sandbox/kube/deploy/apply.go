package deploy

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// ApplyAll applies objects with server-side apply, in order, as field
// manager "mlagent-deploy"; dryRun asks the server to validate and admit
// them without storing anything. A dry run cannot check objects in a
// namespace that does not exist yet (the server refuses them as it would
// any request there): it says so instead.
func ApplyAll(ctx context.Context, cfg *rest.Config, objs []Object, dryRun bool) error {
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, o := range objs {
		m, err := o.Map()
		if err != nil {
			return err
		}
		gv, err := schema.ParseGroupVersion(m["apiVersion"].(string))
		if err != nil {
			return err
		}
		gvr := gv.WithResource(o.Resource)
		opts := metav1.ApplyOptions{FieldManager: fieldManagerID, Force: true}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		u := &unstructured.Unstructured{Object: m}
		var ri dynamic.ResourceInterface = client.Resource(gvr)
		if o.Namespace != "" {
			ri = client.Resource(gvr).Namespace(o.Namespace)
		}
		if _, err := ri.Apply(ctx, o.Name, u, opts); err != nil {
			if dryRun && o.Namespace != "" && apierrors.IsNotFound(err) && newNamespace(objs, o.Namespace) {
				return fmt.Errorf("dry run: namespace %s does not exist yet, so the server cannot check what goes in it (%s %s first); apply without --dry-run creates it", o.Namespace, o.Resource, o.Name)
			}
			return fmt.Errorf("apply %s %s/%s: %w", o.Resource, o.Namespace, o.Name, err)
		}
	}
	return nil
}

// newNamespace reports whether objs create namespace ns.
func newNamespace(objs []Object, ns string) bool {
	for _, o := range objs {
		if o.Resource == "namespaces" && o.Name == ns {
			return true
		}
	}
	return false
}

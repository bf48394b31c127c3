// Package demo is the offline reference session: "Train a model for
// categorizing multispectral satellite imagery", played by a scripted model
// behind the real gateway while everything else is real (the sandbox, the
// tools, PyTorch training on the CPU, Trackio metrics on the dashboard, the
// checkpoint and CSV on the data volume, usage in the ledger). The script
// makes the model's decisions only; every number it reports is parsed from
// what the code in the sandbox printed.
package demo

import (
	"crypto/rand"

	"github.com/mlagent/mlagent/internal/chat"
	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/fakehub"
)

// Upstreams are the demo's stand-ins for the outside world: a scripted
// Messages API that accepts only Key, and an offline Hub catalogue that
// accepts only HFToken.
type Upstreams struct {
	Model     *fakeapi.Server
	Hub       *fakehub.Hub
	Key       string // the "real" model key, which only the gateway holds
	HFToken   string // the "real" Hub token, likewise
	Responder *Responder
}

// StartUpstreams starts both fakes on loopback.
func StartUpstreams(sizes Sizes) *Upstreams {
	key, hfToken := "sk-ant-demo-"+rand.Text(), "hf_demo_"+rand.Text()
	r := &Responder{Sizes: sizes}
	return &Upstreams{
		Model:     fakeapi.Start(fakeapi.Options{APIKey: key, Responder: r}),
		Hub:       fakehub.Start(fakehub.Options{Token: hfToken, Models: hubModels, Datasets: hubDatasets}),
		Key:       key,
		HFToken:   hfToken,
		Responder: r,
	}
}

// Close stops both fakes.
func (u *Upstreams) Close() {
	u.Model.Close()
	u.Hub.Close()
}

// User is the demo's scripted user: it picks the first choice of every
// question, as a person accepting the recommendation would.
type User struct{}

var _ chat.AnswerSource = User{}

// Answer implements chat.AnswerSource.
func (User) Answer(question string, choices []string) (string, bool) {
	if len(choices) > 0 {
		return choices[0], true
	}
	return "yes, go ahead", true
}

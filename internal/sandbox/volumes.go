package sandbox

import (
	"context"
	"io"

	"github.com/mlagent/mlagent/internal/volume"
)

// Volumes is the host's access to a backend's named volumes: what
// `mlagent volume` does, whichever backend holds them. Locally they are
// directories (LocalVolumes); a cluster keeps them as claims only a pod
// can mount. Everything read back is what sandboxes wrote, so every
// implementation keeps internal/volume's rules: no symlink followed, at
// most volume.MaxDepth levels, sizes measured before a copy out and the
// copy held to them.
type Volumes interface {
	List(ctx context.Context) ([]volume.Info, error)
	Exists(ctx context.Context, name string) (bool, error)
	// Create makes an empty volume; volume.ErrExists if it is there.
	Create(ctx context.Context, name string) error
	Remove(ctx context.Context, name string) error
	ReadDir(ctx context.Context, name, rel string) (_ []volume.Entry, truncated bool, _ error)
	Measure(ctx context.Context, name, rel string) (volume.Usage, error)
	// Get copies rel out to the host path dst with cp's rules
	// (volume.GetDest), Put a host file or tree in.
	Get(ctx context.Context, name, rel, dst string) (volume.Copied, error)
	Put(ctx context.Context, name, src, rel string) (volume.Copied, error)
	// Cat writes one file to w.
	Cat(ctx context.Context, name, rel string, w io.Writer) (int64, error)
	RemovePath(ctx context.Context, name, rel string, recursive bool) error
	// Close releases what the access holds (a helper pod).
	Close() error
}

// VolumeBackend is a backend that keeps its volumes where the host
// cannot open them as directories.
type VolumeBackend interface {
	Volumes() Volumes
}

// LocalVolumes is Volumes over the host's volume directories.
func LocalVolumes(st *volume.Store) Volumes { return localVolumes{st} }

type localVolumes struct{ st *volume.Store }

func (l localVolumes) List(context.Context) ([]volume.Info, error) { return l.st.List() }
func (l localVolumes) Exists(_ context.Context, name string) (bool, error) {
	return l.st.Exists(name), nil
}
func (l localVolumes) Create(_ context.Context, name string) error { return l.st.Create(name) }
func (l localVolumes) Remove(_ context.Context, name string) error { return l.st.Remove(name) }
func (l localVolumes) ReadDir(_ context.Context, name, rel string) ([]volume.Entry, bool, error) {
	return l.st.ReadDir(name, rel)
}
func (l localVolumes) Measure(_ context.Context, name, rel string) (volume.Usage, error) {
	return l.st.Measure(name, rel)
}
func (l localVolumes) Get(_ context.Context, name, rel, dst string) (volume.Copied, error) {
	return l.st.Get(name, rel, dst)
}
func (l localVolumes) Put(_ context.Context, name, src, rel string) (volume.Copied, error) {
	return l.st.Put(name, src, rel)
}
func (l localVolumes) Cat(_ context.Context, name, rel string, w io.Writer) (int64, error) {
	return l.st.Cat(name, rel, w)
}
func (l localVolumes) RemovePath(_ context.Context, name, rel string, recursive bool) error {
	return l.st.RemovePath(name, rel, recursive)
}
func (localVolumes) Close() error { return nil }

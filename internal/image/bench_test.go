package image

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"

	"github.com/mlagent/mlagent/internal/image/imagetest"
)

// BenchmarkPullFlatten pulls an image of about 1 GB (uncompressed) from
// the in-memory registry on loopback into an empty cache, and, in the
// same iteration, extracts the same gzip layers with `tar -xzf` one after
// the other, for comparison. The layers are this machine's directories
// named by $MLAGENT_BENCH_DIRS (colon-separated; default
// /usr/lib/python3/dist-packages:/usr/share:/usr/local/go), one layer
// each, gzip level 6 as registries serve them. Run with -benchtime=5x;
// it reports medians.
func BenchmarkPullFlatten(b *testing.B) {
	if _, err := exec.LookPath("tar"); err != nil {
		b.Skip("no tar to compare with")
	}
	dirs := strings.Split(os.Getenv("MLAGENT_BENCH_DIRS"), ":")
	if dirs[0] == "" {
		dirs = []string{"/usr/lib/python3/dist-packages", "/usr/share", "/usr/local/go"}
	}
	work := b.TempDir()
	var blobs []string
	var raw, compressed int64
	var layers []v1.Layer
	for i, d := range dirs {
		p := filepath.Join(work, fmt.Sprintf("layer%d.tar.gz", i))
		n, err := writeLayer(d, p)
		if err != nil {
			b.Skipf("layer from %s: %v", d, err)
		}
		fi, _ := os.Stat(p)
		raw += n
		compressed += fi.Size()
		blobs = append(blobs, p)
		l, err := tarball.LayerFromFile(p)
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, l)
	}
	reg := imagetest.NewRegistry(b)
	img := imagetest.Image(b, imagetest.Config{}, layers...)
	ref := reg.Push(b, "bench/big:1", img)
	b.Logf("image: %d layers, %.0f MB uncompressed, %.0f MB compressed", len(blobs), float64(raw)/1e6, float64(compressed)/1e6)

	var pulls, tars []time.Duration
	for b.Loop() {
		dir := filepath.Join(work, "cache")
		s, err := Open(dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := s.Pull(context.Background(), ref, PullOptions{}); err != nil {
			b.Fatal(err)
		}
		pulls = append(pulls, time.Since(start))
		removeTree(dir)

		out := filepath.Join(work, "tar")
		os.Mkdir(out, 0o755)
		start = time.Now()
		for _, blob := range blobs {
			if o, err := exec.Command("tar", "-xzf", blob, "-C", out).CombinedOutput(); err != nil {
				b.Fatalf("tar: %v: %s", err, o)
			}
		}
		tars = append(tars, time.Since(start))
		removeTree(out)
	}
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return d[len(d)/2].Seconds()
	}
	p, t := med(pulls), med(tars)
	b.ReportMetric(p, "pull-s")
	b.ReportMetric(float64(raw)/1e6/p, "pull-MB/s")
	b.ReportMetric(t, "tar-x-s")
	b.ReportMetric(float64(raw)/1e6/t, "tar-x-MB/s")
	b.ReportMetric(p/t, "pull/tar-x")
}

// writeLayer writes dir's regular files, directories and symlinks as a
// gzip layer (paths under the directory's own path) and returns the
// uncompressed bytes of the files.
func writeLayer(dir, dst string) (int64, error) {
	f, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, 6)
	if err != nil {
		return 0, err
	}
	tw := tar.NewWriter(zw)
	var n int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return nil
		}
		h.Name = strings.TrimPrefix(p, "/")
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return nil // unreadable: left out
			}
			defer src.Close()
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			m, err := io.Copy(tw, src)
			n += m
			return err
		}
		return tw.WriteHeader(h)
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	return n, err
}

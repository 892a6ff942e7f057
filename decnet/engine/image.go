package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"

	"github.com/decnet-swarm/sdk/decnet"
)

// ImageSpec describes an image built from one static executable.
type ImageSpec struct {
	Tag        string            // image reference to tag the result with
	Binary     string            // path of a static executable, copied to /<basename>
	Entrypoint []string          // default: ["/<basename>"]
	Labels     map[string]string // image labels
}

// BuildImage builds spec as a FROM scratch image holding only the binary,
// through the Engine API's build endpoint with a tar context. Nothing is
// pulled. A missing or unreadable binary is decnet.ErrInvalid.
func (e *Engine) BuildImage(ctx context.Context, spec ImageSpec) error {
	if spec.Tag == "" || strings.ContainsAny(spec.Tag, " \t\n") {
		return decnet.Errorf(decnet.ErrInvalid, "image", spec.Tag, "image tag %q is not valid", spec.Tag)
	}
	bin, err := os.ReadFile(spec.Binary)
	if err != nil {
		return decnet.Errorf(decnet.ErrInvalid, "binary", spec.Binary, "read image binary: %v", err)
	}
	name := filepath.Base(spec.Binary)
	entry := spec.Entrypoint
	if len(entry) == 0 {
		entry = []string{"/" + name}
	}
	ej, _ := json.Marshal(entry)
	var df strings.Builder
	fmt.Fprintf(&df, "FROM scratch\nCOPY %s /%s\nENTRYPOINT %s\n", name, name, ej)
	for _, k := range slices.Sorted(maps.Keys(spec.Labels)) {
		kj, _ := json.Marshal(k)
		vj, _ := json.Marshal(spec.Labels[k])
		fmt.Fprintf(&df, "LABEL %s=%s\n", kj, vj)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(df.String())}, {name, 0o755, bin}}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			return fmt.Errorf("build context: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	ctxBytes := buf.Bytes()
	return e.do(ctx, "build", "image", spec.Tag, func(ctx context.Context) error {
		res, err := e.api.ImageBuild(ctx, bytes.NewReader(ctxBytes), client.ImageBuildOptions{
			Tags:        []string{spec.Tag},
			Dockerfile:  "Dockerfile",
			Remove:      true,
			ForceRemove: true,
			Version:     build.BuilderV1,
		})
		if err != nil {
			return err
		}
		defer res.Body.Close()
		return buildStream(spec.Tag, res.Body)
	})
}

// buildStream drains the JSON message stream of the build of tag and returns
// the error it reports, if any (decnet.ErrInvalid).
func buildStream(tag string, r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			jsonstream.Message
			ErrorText string `json:"error,omitempty"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read build output: %w", err)
		}
		if m.Error != nil {
			return decnet.Errorf(decnet.ErrInvalid, "image", tag, "build of image %q failed: %s", tag, m.Error.Message)
		}
		if m.ErrorText != "" {
			return decnet.Errorf(decnet.ErrInvalid, "image", tag, "build of image %q failed: %s", tag, m.ErrorText)
		}
	}
}

// ImageExists reports whether the daemon has an image called tag.
func (e *Engine) ImageExists(ctx context.Context, tag string) (bool, error) {
	err := e.do(ctx, "inspect", "image", tag, func(ctx context.Context) error {
		_, err := e.api.ImageInspect(ctx, tag)
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, decnet.ErrNotFound):
		return false, nil
	}
	return false, err
}

// RemoveImage removes the image tag (and its untagged parents). An image
// that does not exist is not an error.
func (e *Engine) RemoveImage(ctx context.Context, tag string) error {
	err := e.do(ctx, "remove", "image", tag, func(ctx context.Context) error {
		_, err := e.api.ImageRemove(ctx, tag, client.ImageRemoveOptions{PruneChildren: true})
		return err
	})
	if errors.Is(err, decnet.ErrNotFound) {
		return nil
	}
	return err
}

package controlplane

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/registry"
)

// registerVersion registers a READY version of model holding one file,
// model.onnx, with body as its bytes, and returns its number.
func registerVersion(t *testing.T, reg *registry.Registry, model, body string) int64 {
	t.Helper()
	ctx := t.Context()
	if _, err := reg.GetModel(ctx, model); registry.CodeOf(err) == registry.CodeNotFound {
		if _, err := reg.CreateModel(ctx, registry.ModelCreate{Name: model}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := reg.CreateVersion(ctx, model, registry.VersionCreate{Author: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddArtifact(ctx, model, v.Version, registry.ArtifactUpload{Name: "model.onnx", Format: "onnx"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.MarkReady(ctx, model, v.Version); err != nil {
		t.Fatal(err)
	}
	return v.Version
}

// resolvingApplier applies as serving.Reconciler does: it resolves
// registry references first.
type resolvingApplier struct {
	d   *Deployments
	res *RegistryResolver
}

func (a resolvingApplier) Apply(models []config.Model, prune bool) (Changes, error) {
	return a.ApplyAs("", models, prune)
}

func (a resolvingApplier) ApplyAs(actor string, models []config.Model, prune bool) (Changes, error) {
	ms, err := a.res.Resolve(context.Background(), models)
	if err != nil {
		return Changes{}, err
	}
	ch, err := a.d.ApplyAs(actor, ms, prune)
	if err == nil {
		for _, c := range ch.Models {
			if c.Revision != "" {
				_ = a.d.MarkReady(c.Revision) // as a runtime that starts well
			}
		}
	}
	return ch, err
}

func registryDecl(name, ref string) config.Model {
	m := decl(name, "unused")
	m.Path, m.RegistryRef = "", ref
	m.Spec.Spec.Predictor.Model.StorageURI = ref
	return m
}

// TestRegistryResolve: a registry reference deploys the version it names,
// its files placed and checked under the resolver's directory; a
// reference to a missing or not-READY version is refused naming it.
func TestRegistryResolve(t *testing.T) {
	dir := t.TempDir()
	reg := openRegistry(t, dir, "")
	defer reg.Close()
	res := NewRegistryResolver(reg, filepath.Join(dir, "deployed"), nil)
	v1 := registerVersion(t, reg, "iris", "weights one")
	registerVersion(t, reg, "iris", "weights two")
	if _, err := reg.SetAlias(t.Context(), "iris", "prod", v1, "first"); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{
		"registry://iris":      "weights two",
		"registry://iris/1":    "weights one",
		"registry://iris@prod": "weights one",
	} {
		ms, err := res.Resolve(t.Context(), []config.Model{registryDecl("iris", ref)})
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		b, err := os.ReadFile(filepath.Join(ms[0].Path, "model.onnx"))
		if err != nil || string(b) != want {
			t.Errorf("%s: model file %q, %v; want %q", ref, b, err, want)
		}
	}
	pending, err := reg.CreateVersion(t.Context(), "iris", registry.VersionCreate{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"registry://iris@staging", "registry://wine", "registry://iris/" + strconv.FormatInt(pending.Version, 10)} {
		_, err := res.Resolve(t.Context(), []config.Model{registryDecl("iris", ref)})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "iris.yaml#1") || !strings.Contains(err.Error(), "storageUri") {
			t.Errorf("%s: %v; want ErrInvalid naming the declaration and the field", ref, err)
		}
	}
}

// TestFollowAlias: a deployment of registry://iris@prod follows the
// alias: moving it makes a new revision of the new version, moving it back
// deploys the kept revision again; neither counts as an override of the
// declaration.
func TestFollowAlias(t *testing.T) {
	dir := t.TempDir()
	reg := openRegistry(t, dir, "")
	defer reg.Close()
	res := NewRegistryResolver(reg, filepath.Join(dir, "deployed"), nil)
	v1 := registerVersion(t, reg, "iris", "weights one")
	v2 := registerVersion(t, reg, "iris", "weights two")
	if _, err := reg.SetAlias(t.Context(), "iris", "prod", v1, ""); err != nil {
		t.Fatal(err)
	}
	d, _ := newDeployments(t, Options{})
	app := resolvingApplier{d: d, res: res}
	if _, err := app.Apply([]config.Model{registryDecl("iris", "registry://iris@prod")}, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	events := reg.Subscribe(ctx)
	done := make(chan error, 1)
	go func() { done <- res.Follow(ctx, d, app) }()
	defer func() {
		cancel()
		<-done
	}()

	waitFor := func(what string, ok func(ModelState) bool) ModelState {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		gen := uint64(0)
		for {
			ms := modelState(t, d, "iris")
			if ok(ms) {
				return ms
			}
			var err error
			if gen, err = d.Wait(wctx, gen); err != nil {
				t.Fatalf("%s: not within 20s; state %+v", what, ms)
			}
		}
	}
	if _, err := reg.SetAlias(t.Context(), "iris", "prod", v2, "better"); err != nil {
		t.Fatal(err)
	}
	ms := waitFor("iris-00002 serving", func(ms ModelState) bool { return ms.Traffic["iris-00002"] == 100 })
	if ms.Overrides != "" {
		t.Errorf("following the alias counts as an override of %s", ms.Overrides)
	}
	if _, err := reg.SetAlias(t.Context(), "iris", "prod", v1, "roll back"); err != nil {
		t.Fatal(err)
	}
	ms = waitFor("iris-00001 serving again", func(ms ModelState) bool { return ms.Traffic["iris-00001"] == 100 })
	if got := revNames(ms); len(got) != 2 {
		t.Errorf("revisions %v after moving the alias back; want the two kept ones, no third", got)
	}
	// Version 2 is served by a kept revision: the registry knows, and
	// refuses to archive it, naming the deployment.
	timeout := time.After(20 * time.Second)
	for {
		users, err := reg.UsersOf(t.Context(), registry.VersionRef{Model: "iris", Version: v2})
		if err == nil && slices.Contains(users, "inferenceservice/iris") {
			break
		}
		select {
		case <-events: // a registry change: look again
		case <-timeout:
			t.Fatalf("the registry does not know that inferenceservice/iris uses iris/%d: %v, %v", v2, users, err)
		}
	}
	if _, err := reg.ArchiveVersion(t.Context(), "iris", v2); registry.CodeOf(err) != registry.CodeConflict || !strings.Contains(err.Error(), "inferenceservice/iris") {
		t.Errorf("archiving a version a deployment serves: %v; want a conflict naming inferenceservice/iris", err)
	}
}

package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDefaultValid guarantees that the embedded default.yaml is a valid
// policy (so Default never panics) with the promised content: one template
// "python" warming numpy, pandas and matplotlib.pyplot, and one pool for it
// of idle 2, max_total 8, max_booting 1, on a host of 16 sandboxes.
func TestDefaultValid(t *testing.T) {
	p := Default()
	if p.Source != DefaultSource {
		t.Errorf("Source = %q", p.Source)
	}
	if p.DefaultTemplate != "python" || len(p.Templates) != 1 || p.Host.MaxSandboxes != 16 {
		t.Errorf("Default() = %+v", p)
	}
	if want := []string{"numpy", "pandas", "matplotlib.pyplot"}; !reflect.DeepEqual(p.Templates["python"].WarmImports, want) {
		t.Errorf("warm_imports = %v, want %v", p.Templates["python"].WarmImports, want)
	}
	if want := []Pool{{Template: "python", Idle: 2, MaxTotal: 8, MaxBooting: 1}}; !reflect.DeepEqual(p.Pools, want) {
		t.Errorf("Pools = %+v, want %+v", p.Pools, want)
	}
	if !bytes.Equal(DefaultYAML(), defaultYAML) {
		t.Error("DefaultYAML() differs from the embedded file")
	}
}

// TestDefaultMatchesConstants guarantees that default.yaml and the Default*
// constants say the same thing: the embedded policy's host and template
// equal those of a policy that leaves every field out (apart from env and
// warm_imports, which default to empty), and its pool equals the pool
// defaults.
func TestDefaultMatchesConstants(t *testing.T) {
	def := Default()
	bare := mustParse(t, "templates:\n  python: {}\n")
	if def.Host != bare.Host {
		t.Errorf("default.yaml host %+v, constants give %+v", def.Host, bare.Host)
	}
	got, want := *def.Templates["python"], *bare.Templates["python"]
	got.Env, got.WarmImports = nil, nil
	want.Env, want.WarmImports = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("default.yaml template\n %+v\nconstants give\n %+v", got, want)
	}
	if def.Pools[0] != newPool("python") {
		t.Errorf("default.yaml pool %+v, constants give %+v", def.Pools[0], newPool("python"))
	}
}

// TestDefaultReturnsCopy guarantees that a caller changing the policy
// Default returned does not change what the next call returns.
func TestDefaultReturnsCopy(t *testing.T) {
	a := Default()
	a.Templates["python"].Limits.Memory = 1
	a.Templates["python"].Env["X"] = "y"
	if b := Default(); b.Templates["python"].Limits.Memory != DefaultMemory || b.Templates["python"].Env["X"] != "" {
		t.Error("Default() returned shared state")
	}
}

// TestExamplesValid guarantees that every file in examples/ is a valid
// policy, so the documented examples always work as written.
func TestExamplesValid(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d examples, want at least 3: %v", len(files), files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p, err := Load(f)
			if err != nil {
				t.Fatalf("%v", err)
			}
			if _, err := p.Template(""); err != nil {
				t.Errorf("default template: %v", err)
			}
		})
	}
}

// TestREADMEDocumentsEveryField guarantees that README.md documents every
// field of the format (each appears as `name` in it) and every example
// file, so the reference cannot silently fall behind the code.
func TestREADMEDocumentsEveryField(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(defaultYAML, &doc); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	var walk func(n *yaml.Node, inFreeMap bool)
	walk = func(n *yaml.Node, inFreeMap bool) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, false)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if !inFreeMap {
					keys[k] = true
				}
				walk(n.Content[i+1], k == "templates" || k == "env")
			}
		}
	}
	walk(&doc, false)
	if len(keys) < 25 {
		t.Fatalf("found only %d field names in default.yaml: %v", len(keys), keys)
	}
	var missing []string
	for k := range keys {
		if !strings.Contains(string(readme), "`"+k+"`") {
			missing = append(missing, k)
		}
	}
	files, _ := filepath.Glob("examples/*.yaml")
	for _, f := range files {
		if !strings.Contains(string(readme), filepath.Base(f)) {
			missing = append(missing, f)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("README.md does not mention: %v", missing)
	}
	// The defaults quoted in the README's field table must be the real ones.
	for _, want := range []string{"`16`", "`1Gi`", "`512Mi`", "`256`", "`1024`", "`16Mi`", "`4Gi`", "`60s`", "`10m`", "`720h`", "`24h`", "`5m`", "`16Gi`"} {
		if !bytes.Contains(readme, []byte(want)) {
			t.Errorf("README.md does not quote the default %s", want)
		}
	}
}

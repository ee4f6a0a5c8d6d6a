package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// makefilePackages collects the Debian packages the Makefile installs for
// `make test`: E2E_APT, however many lines (`:=`, `+=`, continuations)
// other work spreads it over.
func makefilePackages(t *testing.T) map[string]bool {
	t.Helper()
	text := strings.ReplaceAll(read(t, "../Makefile"), "\\\n", " ")
	pkgs := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^E2E_APT\s*[:+?]?=(.*)$`).FindAllStringSubmatch(text, -1) {
		for _, p := range strings.Fields(m[1]) {
			if strings.HasPrefix(p, "#") {
				break
			}
			pkgs[p] = true
		}
	}
	if len(pkgs) == 0 {
		t.Fatal("no E2E_APT packages in the Makefile")
	}
	return pkgs
}

// readmePackages reads the package table of the top-level README.md: the
// first column of the table under the "packages:" marker.
func readmePackages(t *testing.T) map[string]bool {
	t.Helper()
	text := read(t, "../README.md")
	_, table, ok := strings.Cut(text, "<!-- packages:")
	if !ok {
		t.Fatal("README.md has no <!-- packages: ... --> table")
	}
	pkgs := map[string]bool{}
	for _, line := range strings.Split(table, "\n")[1:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if m := regexp.MustCompile("^\\| `([a-z0-9][a-z0-9.+-]*)` \\|").FindStringSubmatch(line); m != nil {
			pkgs[m[1]] = true
		}
	}
	return pkgs
}

// TestREADMEListsEveryPackage: README.md lists exactly the Debian packages
// `make test` installs, so a fresh machine can be prepared from the README.
func TestREADMEListsEveryPackage(t *testing.T) {
	mk, rd := makefilePackages(t), readmePackages(t)
	var missing, extra []string
	for p := range mk {
		if !rd[p] {
			missing = append(missing, p)
		}
	}
	for p := range rd {
		if !mk[p] {
			extra = append(extra, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("README.md's package table lacks %v, which make test installs (Makefile E2E_APT)", missing)
	}
	if len(extra) > 0 {
		t.Errorf("README.md's package table lists %v, which make test does not install", extra)
	}
}

// TestREADMEPointsInsideTheRepository: the docs an operator needs are in
// this repository; README.md must not send them to files outside it.
func TestREADMEPointsInsideTheRepository(t *testing.T) {
	for _, f := range []string{"../README.md", "README.md", "../docs/reference.md", "../docs/metrics.md"} {
		text := read(t, f)
		if strings.Contains(text, "shared/") || strings.Contains(text, "CONTRACT.md") {
			t.Errorf("%s points at the team's shared notes, outside the repository", f)
		}
	}
	for _, link := range regexp.MustCompile(`\]\(([^)#]+)`).FindAllStringSubmatch(read(t, "../README.md"), -1) {
		if strings.HasPrefix(link[1], "http") {
			continue
		}
		if _, err := os.Stat("../" + link[1]); err != nil {
			t.Errorf("README.md links to %s: %v", link[1], err)
		}
	}
}

// slug is GitHub's anchor for a Markdown heading.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestDocLinksResolve checks every relative link of the operator docs: the
// file exists and, with a #fragment, has a heading of that name.
func TestDocLinksResolve(t *testing.T) {
	docs, _ := filepath.Glob("../docs/*.md")
	docs = append(docs, "../README.md", "README.md")
	heading := regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	link := regexp.MustCompile(`\]\(([^)\s]*)\)`)
	anchors := func(file string) map[string]bool {
		a := map[string]bool{}
		for _, m := range heading.FindAllStringSubmatch(read(t, file), -1) {
			a[slug(m[1])] = true
		}
		return a
	}
	for _, doc := range docs {
		for _, m := range link.FindAllStringSubmatch(read(t, doc), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			file := doc
			if path != "" {
				file = filepath.Join(filepath.Dir(doc), path)
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s links to %s: %v", doc, target, err)
					continue
				}
			}
			if frag != "" && strings.HasSuffix(file, ".md") && !anchors(file)[frag] {
				t.Errorf("%s links to %s: no heading #%s in %s", doc, target, frag, file)
			}
		}
	}
}

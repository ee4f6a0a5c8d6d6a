package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// tokenGroup is the group install.sh creates and the unit joins.
const tokenGroup = "vncedge-tokens"

// runInstall runs deploy/systemd/install.sh from the repository root into
// the scratch root dest, as README.md tells an operator to run it.
func runInstall(t *testing.T, dest string) string {
	t.Helper()
	cmd := exec.Command("deploy/systemd/install.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "DESTDIR="+dest, "BIN="+buildVncedge(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	return string(out)
}

// groupID reads a group's id from a root's /etc/group.
func groupID(t *testing.T, root, name string) int {
	t.Helper()
	for _, line := range strings.Split(read(t, filepath.Join(root, "etc/group")), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 3 && f[0] == name {
			id, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatalf("group %s: %v", name, err)
			}
			return id
		}
	}
	t.Fatalf("no group %s in %s/etc/group", name, root)
	return 0
}

// checkAs runs the installed binary's --check with the installed config,
// its paths rewritten into the scratch root, optionally as another user.
func checkAs(t *testing.T, root, config string, cred *syscall.Credential) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, "usr/local/bin/vncedge"), "--config", config, "--check")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSystemdInstallLeavesServiceWorking follows the documented install
// (install.sh, which README.md shows) into a scratch root and checks what
// the service will find at its first start: the token directory exists with
// the documented owner and mode, and `vncedge --check` passes on the
// shipped config, as root and as a transient user in the token group,
// while a user outside the group cannot read the tokens.
func TestSystemdInstallLeavesServiceWorking(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the install test needs root (chown, groupadd) and CI runs as root")
		}
		t.Skip("SKIPPED: the install test needs root (install.sh chowns the token directory)")
	}
	// Another user must be able to reach the scratch root, as the service
	// reaches /etc: open up the test's own temporary directories.
	root := t.TempDir()
	for d := root; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	runInstall(t, root)

	// The unit and the script agree on the group, and the config points at
	// the directory the script made.
	unit := read(t, filepath.Join(root, "etc/systemd/system/vncedge.service"))
	if !strings.Contains(unit, "\nSupplementaryGroups="+tokenGroup+"\n") || !strings.Contains(unit, "\nDynamicUser=yes\n") {
		t.Errorf("the installed unit does not run as a DynamicUser in group %s", tokenGroup)
	}
	gid := groupID(t, root, tokenGroup)
	tokens := filepath.Join(root, "etc/vncedge/tokens")
	fi, err := os.Stat(tokens)
	if err != nil {
		t.Fatalf("install.sh did not create /etc/vncedge/tokens: %v", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o750 || st.Uid != 0 || int(st.Gid) != gid {
		t.Errorf("/etc/vncedge/tokens: %v uid %d gid %d, want a directory 0750 root:%s (%d)", fi.Mode(), st.Uid, st.Gid, tokenGroup, gid)
	}
	for _, f := range []string{"usr/local/bin/vncedge", "etc/sysctl.d/99-vncedge.conf", "etc/vncedge/vncedge.yaml",
		"etc/systemd/system/vncedge@.service", "usr/local/sbin/vncedge-rollout"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("install.sh did not install /%s: %v", f, err)
		}
	}

	// A token file added the way README.md says: root:vncedge-tokens 0640.
	vms := filepath.Join(tokens, "vms.conf")
	if err := os.WriteFile(vms, []byte("vm1: 192.168.100.3:5901\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(vms, 0, gid); err != nil {
		t.Fatal(err)
	}

	// The shipped config, with its absolute paths moved into the root.
	installed := filepath.Join(root, "etc/vncedge/vncedge.yaml")
	cfgText := read(t, installed)
	// Every file system path it names (URL paths aside) must exist.
	paths := regexp.MustCompile(`(?m)^([a-z-]+):\s+(/\S+)`).FindAllStringSubmatch(cfgText, -1)
	if len(paths) == 0 {
		t.Fatal("the shipped config names no path; is token-file gone?")
	}
	for _, p := range paths {
		if p[1] == "token-path" {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, p[2])); err != nil {
			t.Errorf("vncedge.yaml's %s names %s, which the install does not create: %v", p[1], p[2], err)
		}
	}
	config := rewrite(t, installed, t.TempDir(), "/etc/vncedge/tokens", tokens)
	if err := os.Chmod(filepath.Dir(config), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(config, 0o644); err != nil {
		t.Fatal(err)
	}

	if out, err := checkAs(t, root, config, nil); err != nil || !strings.Contains(out, "configuration OK") {
		t.Fatalf("vncedge --check as root after the install: %v\n%s", err, out)
	}
	// As systemd runs it: an unknown uid (DynamicUser) with the group.
	const transient = 61234
	out, err := checkAs(t, root, config, &syscall.Credential{Uid: transient, Gid: transient, Groups: []uint32{uint32(gid)}})
	if err != nil || !strings.Contains(out, "configuration OK") {
		t.Errorf("vncedge --check as the service's user (group %s): %v\n%s", tokenGroup, err, out)
	}
	// Without the group the tokens stay unreadable: they are secrets.
	out, err = checkAs(t, root, config, &syscall.Credential{Uid: transient, Gid: transient, Groups: []uint32{}})
	if err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("vncedge --check as a user outside %s read the tokens: %v\n%s", tokenGroup, err, out)
	}

	// Running the install again (an upgrade) keeps the operator's config
	// and tokens, and their modes.
	if err := os.WriteFile(installed, []byte(cfgText+"# edited by the operator\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := runInstall(t, root); !strings.Contains(out, "keeping the existing") {
		t.Errorf("second install.sh run did not say it kept the config:\n%s", out)
	}
	if !strings.Contains(read(t, installed), "# edited by the operator") {
		t.Error("the second install.sh run replaced the operator's config")
	}
	if fi, err := os.Stat(vms); err != nil || fi.Mode().Perm() != 0o640 || int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("token file after the second install: %v %v", fi, err)
	}
}

// TestInstallIsWhatREADMEShows keeps README.md from drifting back to a
// list of manual steps that differ from the tested script.
func TestInstallIsWhatREADMEShows(t *testing.T) {
	readme := read(t, "README.md")
	for _, want := range []string{"deploy/systemd/install.sh", "root:" + tokenGroup, "0750", "0640", "SupplementaryGroups=" + tokenGroup} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not mention %s", want)
		}
	}
	if !strings.Contains(read(t, "systemd/install.sh"), "GROUP="+tokenGroup+"\n") {
		t.Errorf("install.sh does not create group %s", tokenGroup)
	}
}

// Package deploy holds no code: its directory carries the deployment files
// (systemd, sysctl, container, Kubernetes, TLS fronting), and its tests check
// what can be checked of them without those systems.
package deploy

package rfb

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// The expected response was computed outside Go: the key "password" with each byte's bits
// reversed (0e86ceceeef64e26) and `openssl enc -des-ecb -nopad` over bytes 00..0f.
func TestVNCAuthKnownVector(t *testing.T) {
	var challenge [ChallengeLen]byte
	for i := range challenge {
		challenge[i] = byte(i)
	}
	got := VNCAuthResponse([]byte("password"), challenge)
	want, _ := hex.DecodeString("b866924125c8eebb9debc1db61c538e2")
	if !bytes.Equal(got[:], want) {
		t.Fatalf("VNCAuthResponse = %x, want %x", got, want)
	}
	if k := VNCAuthKey([]byte("password")); hex.EncodeToString(k[:]) != "0e86ceceeef64e26" {
		t.Fatalf("key %x", k)
	}
	// Only the first 8 bytes of a password count; a short one is zero-padded.
	if VNCAuthResponse([]byte("password-and-more"), challenge) != got {
		t.Fatal("password longer than 8 bytes changed the response")
	}
	if VNCAuthResponse([]byte("passwore"), challenge) == got {
		t.Fatal("different password gave the same response")
	}
	if VNCAuthResponse([]byte("pw"), challenge) != VNCAuthResponse([]byte("pw\x00\x00"), challenge) {
		t.Fatal("short password not zero-padded")
	}
	if !VNCAuthCheck([]byte("password"), challenge, got) || VNCAuthCheck([]byte("passw0rd"), challenge, got) {
		t.Fatal("VNCAuthCheck")
	}
}

func TestReverseBits(t *testing.T) {
	for i := range 256 {
		b := byte(i)
		var want byte
		for bit := range 8 {
			if b&(1<<bit) != 0 {
				want |= 0x80 >> bit
			}
		}
		if reverseBits(b) != want {
			t.Fatalf("reverseBits(%#x) = %#x, want %#x", b, reverseBits(b), want)
		}
	}
}

package rfb

import (
	"crypto/des"
	"crypto/subtle"
)

// ChallengeLen is the size of the VNC Authentication challenge and of its response.
const ChallengeLen = 16

// VNCAuthKeyLen is how much of a password VNC Authentication uses: longer ones are cut, shorter
// ones padded with zero bytes, as every VNC implementation does.
const VNCAuthKeyLen = 8

// VNCAuthKey turns a password into the DES key of VNC Authentication (RFC 6143 7.2.2): the first
// 8 bytes, zero-padded, with the bits of each byte reversed. The reversal is not in the RFC's
// text but is what the original implementation did and what every server expects (RFC 6143
// errata 4951).
func VNCAuthKey(password []byte) [VNCAuthKeyLen]byte {
	var key [VNCAuthKeyLen]byte
	copy(key[:], password)
	for i, b := range key {
		key[i] = reverseBits(b)
	}
	return key
}

// VNCAuthEncrypt answers challenge with a key from VNCAuthKey: both 8-byte halves encrypted with
// DES in ECB mode.
func VNCAuthEncrypt(key [VNCAuthKeyLen]byte, challenge [ChallengeLen]byte) [ChallengeLen]byte {
	c, err := des.NewCipher(key[:])
	if err != nil {
		// des.NewCipher fails only for a key that is not 8 bytes long.
		panic(err)
	}
	var out [ChallengeLen]byte
	c.Encrypt(out[:8], challenge[:8])
	c.Encrypt(out[8:], challenge[8:])
	return out
}

// VNCAuthResponse is the client's answer to challenge for password.
func VNCAuthResponse(password []byte, challenge [ChallengeLen]byte) [ChallengeLen]byte {
	return VNCAuthEncrypt(VNCAuthKey(password), challenge)
}

// VNCAuthCheck is the server's check of a client's response, in constant time.
func VNCAuthCheck(password []byte, challenge, response [ChallengeLen]byte) bool {
	want := VNCAuthResponse(password, challenge)
	return subtle.ConstantTimeCompare(want[:], response[:]) == 1
}

func reverseBits(b byte) byte {
	b = b>>4 | b<<4
	b = (b&0xcc)>>2 | (b&0x33)<<2
	b = (b&0xaa)>>1 | (b&0x55)<<1
	return b
}

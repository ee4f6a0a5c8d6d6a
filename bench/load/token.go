package load

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SignJWT is a signed token (HS256) naming vm with the claims vncedge's --token-jwt-key
// reads: host, port (a number), exp, and jti, which makes every session's token its own (the
// same VM and second would otherwise sign the same bytes, and the proxy's cache would answer).
func SignJWT(secret []byte, vm VMAddr, jti string, exp time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("jwt token scheme without a secret")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"host": vm.IP,
		"port": vm.Port,
		"exp":  exp.Unix(),
		"jti":  jti,
	})
	return t.SignedString(secret)
}

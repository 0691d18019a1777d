package auth

// BearerToken returns the token of an Authorization header value of the
// form "Bearer <token>" (the scheme in any case, RFC 7235), as fasthttp's
// Request.Header.Peek("Authorization") gives it. The token aliases
// authorization; ok is false when the value is not a bearer credential.
// It allocates nothing.
func BearerToken(authorization []byte) (token []byte, ok bool) {
	return bearer(authorization)
}

// BearerTokenString is BearerToken for a string, as gRPC metadata
// ("authorization") carries it.
func BearerTokenString(authorization string) (token string, ok bool) {
	return bearer(authorization)
}

// bearer parses "Bearer" SP+ token, with optional whitespace around.
func bearer[T ~string | ~[]byte](v T) (token T, ok bool) {
	v = trimSpace(v)
	const scheme = "bearer"
	if len(v) <= len(scheme) || !isSpace(v[len(scheme)]) {
		return token, false
	}
	for i := range len(scheme) {
		if v[i]|0x20 != scheme[i] {
			return token, false
		}
	}
	token = trimSpace(v[len(scheme):])
	for i := range len(token) {
		if charClass[token[i]]&classToken == 0 {
			return token[:0], false
		}
	}
	return token, len(token) > 0
}

func trimSpace[T ~string | ~[]byte](v T) T {
	for len(v) > 0 && isSpace(v[0]) {
		v = v[1:]
	}
	for len(v) > 0 && isSpace(v[len(v)-1]) {
		v = v[:len(v)-1]
	}
	return v
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

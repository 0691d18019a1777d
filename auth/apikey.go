package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"
)

// KeyPrefix starts every API key token, so that a key is told from a JWT
// at a glance and secret scanners can find leaked ones.
const KeyPrefix = "igk_"

const (
	keyIDBytes     = 8
	keyIDLen       = 2 * keyIDBytes // lowercase hex
	keySecretBytes = 32
	keySecretLen   = 43 // base64url of 32 bytes, unpadded
	// keyTokenLen is the length of every well-formed token:
	// igk_<id>_<secret>.
	keyTokenLen = len(KeyPrefix) + keyIDLen + 1 + keySecretLen
)

// NewKey makes an API key for tenant, named name for people, expiring at
// expires (never when zero). It returns the token to hand to the caller
// once, "igk_<id>_<secret>", and the Key to store, which keeps only the
// secret's hash: the token cannot be recovered from it.
//
// The id is 8 random bytes in lowercase hex and is public: it names the
// key in listings, logs and error messages. The secret is 32 bytes from
// crypto/rand in unpadded base64url. Key.Hash is the SHA-256 of the
// secret's 43 characters. A fast, unsalted hash is the right one here,
// unlike for a password: the secret has 256 bits of entropy, so no
// dictionary or brute-force search over a leaked hash can succeed, and a
// slow hash (bcrypt, argon2) would only cost every request milliseconds.
func NewKey(tenant, name string, expires time.Time) (token string, k Key, err error) {
	if err := checkName(tenant); err != nil {
		return "", Key{}, fmt.Errorf("auth: new key: tenant: %w", err)
	}
	var raw [keyIDBytes + keySecretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Key{}, fmt.Errorf("auth: new key: %w", err)
	}
	id := hex.EncodeToString(raw[:keyIDBytes])
	secret := base64.RawURLEncoding.EncodeToString(raw[keyIDBytes:])
	h, _ := hashSecret(secret)
	k = Key{ID: id, Tenant: tenant, Name: name, Hash: h, Created: time.Now(), Expires: expires}
	return KeyPrefix + id + "_" + secret, k, nil
}

// ParseKey splits an API key token into its id and secret. It checks the
// form only (prefix, lengths, alphabets), not whether the key exists; the
// error says what is wrong and never repeats the token.
func ParseKey(token string) (id, secret string, err error) {
	id, secret, ok := splitKey(token)
	if !ok {
		return "", "", errMalformedKey
	}
	return id, secret, nil
}

// Matches reports whether secret is k's, comparing hashes in constant
// time.
func (k Key) Matches(secret string) bool {
	h, ok := hashSecret(secret)
	return ok && subtle.ConstantTimeCompare(h[:], k.Hash[:]) == 1
}

// splitKey returns the id and secret of a well-formed token. It reads
// strings and byte slices alike and allocates nothing.
func splitKey[T ~string | ~[]byte](tok T) (id, secret T, ok bool) {
	if len(tok) != keyTokenLen || string(tok[:len(KeyPrefix)]) != KeyPrefix {
		return id, secret, false
	}
	id = tok[len(KeyPrefix) : len(KeyPrefix)+keyIDLen]
	if tok[len(KeyPrefix)+keyIDLen] != '_' {
		return id, secret, false
	}
	secret = tok[len(KeyPrefix)+keyIDLen+1:]
	for i := range len(id) {
		if charClass[id[i]]&classHex == 0 {
			return id, secret, false
		}
	}
	for i := range len(secret) {
		if charClass[secret[i]]&classBase64URL == 0 {
			return id, secret, false
		}
	}
	return id, secret, true
}

// hashSecret is the SHA-256 of a secret of the right length (false for
// any other), without allocating: the secret is copied to the stack
// rather than converted.
func hashSecret[T ~string | ~[]byte](secret T) (h [32]byte, ok bool) {
	if len(secret) != keySecretLen {
		return h, false
	}
	var buf [keySecretLen]byte
	copy(buf[:], secret)
	return sha256.Sum256(buf[:]), true
}

// checkName reports whether s is a DNS label, as tenant names are.
func checkName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%q is not a DNS label (1 to 63 characters)", s)
	}
	for i := range len(s) {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return fmt.Errorf("%q is not a DNS label (lowercase letters, digits and inner '-')", s)
		}
	}
	return nil
}

// The classes of charClass.
const (
	classHex       = 1 << iota // lowercase hexadecimal digit
	classBase64URL             // of the base64url alphabet
	classToken                 // may be in a bearer token: not a space or a control
)

// charClass classifies bytes for the parsers, a table lookup per byte.
var charClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= '0' && c <= '9':
			t[c] |= classHex | classBase64URL
		case c >= 'a' && c <= 'f':
			t[c] |= classHex | classBase64URL
		case c >= 'g' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
			t[c] |= classBase64URL
		}
		if c > ' ' && c != 0x7f {
			t[c] |= classToken
		}
	}
	return t
}()

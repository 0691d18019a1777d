package tenants

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/internal/jsonhttp"
)

// Client calls the tenants API of an admin port (Handler): what the CLI
// uses when it does not open the store itself. Its methods are the
// Store's, with the same errors: an answer of 400, 404 or 409 is an
// *Error of code ErrInvalid, ErrNotFound or ErrConflict carrying the
// server's message. It is safe for concurrent use.
type Client struct {
	base string
	opts ClientOptions
}

// ClientOptions configure NewClient. Every zero value has a documented
// default.
type ClientOptions struct {
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Key, when set, is sent as "Authorization: Bearer <Key>": an API key
	// (or JWT) with the admin grant.
	Key string
	// Actor is sent as X-Infergate-Actor with every change: who makes it
	// (the CLI's OS user). "" sends none: the server records the client's
	// address, or the key's tenant.
	Actor string
	// Timeout bounds each call. 0 means 30s.
	Timeout time.Duration
}

// NewClient returns a client of the admin port at admin: HOST:PORT or an
// http:// or https:// URL.
func NewClient(admin string, opts ClientOptions) (*Client, error) {
	base, err := jsonhttp.BaseURL(admin)
	if err != nil {
		return nil, err
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("tenants: ClientOptions.Timeout %s is negative", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	return &Client{base: base, opts: opts}, nil
}

// call sends a request with in (nil: no body) as JSON and decodes a 2xx
// answer into out.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := jsonhttp.NewRequest(ctx, method, c.base+path, in)
	if err != nil {
		return err
	}
	if method != http.MethodGet && c.opts.Actor != "" {
		req.Header.Set(ActorHeader, c.opts.Actor)
	}
	if c.opts.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Key)
	}
	err = jsonhttp.Do(c.opts.HTTPClient, req, 16<<20, out)
	var ae *jsonhttp.AnswerError
	if errors.As(err, &ae) {
		return answerError(ae)
	}
	return err
}

// answerError is the error of an error answer: the server's message, with
// this package's code where the status has one.
func answerError(ae *jsonhttp.AnswerError) error {
	msg := ae.Message
	if msg == "" {
		msg = strings.TrimSpace(string(ae.Body))
	}
	if len(msg) > 500 {
		msg = msg[:500] + "..."
	}
	if msg == "" {
		msg = ae.StatusText
	}
	switch ae.Status {
	case http.StatusBadRequest:
		return &Error{Code: ErrInvalid, Msg: msg}
	case http.StatusNotFound:
		return &Error{Code: ErrNotFound, Msg: msg}
	case http.StatusConflict:
		return &Error{Code: ErrConflict, Msg: msg}
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%s (%s: give an admin key with -key or INFERGATE_KEY)", msg, ae.StatusText)
	}
	return errors.New(msg)
}

// CreateTenant is Store.CreateTenant over the API.
func (c *Client) CreateTenant(ctx context.Context, t auth.Tenant) (TenantInfo, error) {
	var out TenantInfo
	err := c.call(ctx, http.MethodPost, tenantsPath, TenantCreate{Name: t.Name, Weight: t.Weight, RatePerSecond: t.RatePerSecond, Burst: t.Burst, MaxInFlight: t.MaxInFlight}, &out)
	return out, err
}

// UpdateTenant is Store.UpdateTenant over the API.
func (c *Client) UpdateTenant(ctx context.Context, name string, u TenantUpdate) (TenantInfo, error) {
	var out TenantInfo
	path, err := tenantPath(name)
	if err == nil {
		err = c.call(ctx, http.MethodPatch, path, u, &out)
	}
	return out, err
}

// DeleteTenant is Store.DeleteTenant over the API.
func (c *Client) DeleteTenant(ctx context.Context, name string) (DeleteResult, error) {
	var out DeleteResult
	path, err := tenantPath(name)
	if err == nil {
		err = c.call(ctx, http.MethodDelete, path, nil, &out)
	}
	return out, err
}

// GetTenant is Store.GetTenant over the API.
func (c *Client) GetTenant(ctx context.Context, name string) (TenantInfo, error) {
	var out TenantDetail
	path, err := tenantPath(name)
	if err == nil {
		err = c.call(ctx, http.MethodGet, path, nil, &out)
	}
	return out.TenantInfo, err
}

// ListTenants is Store.ListTenants over the API.
func (c *Client) ListTenants(ctx context.Context) ([]TenantInfo, error) {
	var out List[TenantInfo]
	err := c.call(ctx, http.MethodGet, tenantsPath, nil, &out)
	return out.Items, err
}

// CreateKey is Store.CreateKey over the API.
func (c *Client) CreateKey(ctx context.Context, tenant, name string, expires time.Time) (string, KeyInfo, error) {
	var out KeyCreated
	path, err := tenantPath(tenant)
	if err == nil {
		err = c.call(ctx, http.MethodPost, path+"/keys", KeyCreate{Name: name, Expires: expires}, &out)
	}
	return out.Token, out.Key, err
}

// RevokeKey is Store.RevokeKey over the API.
func (c *Client) RevokeKey(ctx context.Context, id string) (KeyInfo, error) {
	id, err := KeyID(id)
	if err != nil {
		return KeyInfo{}, err
	}
	var out KeyInfo
	err = c.call(ctx, http.MethodDelete, keysPath+"/"+id, nil, &out)
	return out, err
}

// ListKeys is Store.ListKeys over the API.
func (c *Client) ListKeys(ctx context.Context, tenant string) ([]KeyInfo, error) {
	var out List[KeyInfo]
	path := keysPath
	if tenant != "" {
		path += "?tenant=" + url.QueryEscape(tenant)
	}
	err := c.call(ctx, http.MethodGet, path, nil, &out)
	return out.Items, err
}

// AddGrant is Store.AddGrant over the API.
func (c *Client) AddGrant(ctx context.Context, g auth.Grant) (auth.Grant, error) {
	var out GrantInfo
	path, err := tenantPath(g.Tenant)
	if err == nil {
		err = c.call(ctx, http.MethodPost, path+"/grants", GrantCreate{Actions: ActionNames(g.Actions), Models: g.Models, Selector: g.Selector}, &out)
	}
	if err != nil {
		return auth.Grant{}, err
	}
	return out.grant()
}

// RemoveGrant is Store.RemoveGrant over the API.
func (c *Client) RemoveGrant(ctx context.Context, id int64) (auth.Grant, error) {
	var out GrantInfo
	if err := c.call(ctx, http.MethodDelete, grantsPath+"/"+strconv.FormatInt(id, 10), nil, &out); err != nil {
		return auth.Grant{}, err
	}
	return out.grant()
}

// ListGrants is Store.ListGrants over the API.
func (c *Client) ListGrants(ctx context.Context, tenant string) ([]auth.Grant, error) {
	var out List[GrantInfo]
	path := grantsPath
	if tenant != "" {
		path += "?tenant=" + url.QueryEscape(tenant)
	}
	if err := c.call(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	var gs []auth.Grant
	for _, gi := range out.Items {
		g, err := gi.grant()
		if err != nil {
			return nil, err
		}
		gs = append(gs, g)
	}
	return gs, nil
}

// grant is the auth.Grant the API showed.
func (g GrantInfo) grant() (auth.Grant, error) {
	a, err := ParseActions(strings.Join(g.Actions, ","))
	if err != nil {
		return auth.Grant{}, fmt.Errorf("grant %d from the API: %w", g.ID, err)
	}
	return auth.Grant{ID: g.ID, Tenant: g.Tenant, Actions: a, Models: g.Models, Selector: g.Selector}, nil
}

// tenantPath is the API path of a tenant; a name that is no tenant's is
// refused here, as the server would, rather than make another path.
func tenantPath(name string) (string, error) {
	if err := CheckTenantName(name); err != nil {
		return "", err
	}
	return tenantsPath + "/" + name, nil
}

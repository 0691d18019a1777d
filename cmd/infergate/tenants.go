package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/controlplane/tenants"
	"github.com/infergate/infergate/internal/cliflags"
	"github.com/infergate/infergate/registry"
)

// `infergate tenants ...` and `infergate keys ...`: tenants, their API
// keys and grants, through the admin API (controlplane/tenants.Client) or,
// with -data-dir or -store, on the store itself (tenants.Store): the
// bootstrap, before any admin key exists.

const tenantsUsage = `Usage:
  infergate tenants create NAME [-weight N] [-rate R] [-burst B] [-max-inflight N]
  infergate tenants update NAME [-weight N] [-rate R] [-burst B] [-max-inflight N]
  infergate tenants list
  infergate tenants get NAME                  the tenant with its keys and grants
  infergate tenants delete NAME               with its keys and grants
  infergate tenants grant NAME -actions infer,metadata (-models a,b | -models '*' | -selector team=search)
  infergate tenants grant NAME -actions admin[,command,metrics]
  infergate tenants revoke-grant ID
  infergate keys create -tenant T [-name N] [-expires 720h|30d|RFC3339]
  infergate keys list [-tenant T]
  infergate keys revoke ID

Actions: infer and metadata are about models (name them, '*' for every
model, or select them by label); admin (changes through the admin API),
command (declaring infergate.io/command, with admin) and metrics (the
admin port's /metrics) are not. -weight is the tenant's share of a
saturated model (default 1); -rate and -burst bound its requests per
second, -max-inflight its requests in flight (0: no bound).

Every command talks to the admin API at -admin HOST:PORT or URL (default
127.0.0.1:8090), sending -key or $INFERGATE_KEY as a bearer token, or, with
-data-dir DIR or -store URL (as infergate serve takes them), opens the
store itself: that is how the first admin key is made. A server on the
same store sees the change within 2 seconds. -o table|json (-json) picks
the output. Flags may come before, between or after the arguments.
`

// tenantsFlags holds every flag of the tenants and keys commands; each
// command registers the ones it takes (tenantsFlagDefs).
type tenantsFlags struct {
	admin, key, dataDir, store, output string
	asJSON                             bool
	weight, burst, maxInFlight         int
	rate                               float64
	actions, models                    string
	selectors                          stringList
	tenant, name, expires              string
}

var tenantsFlagDefs = map[string]func(fs *flag.FlagSet, f *tenantsFlags){
	"weight": func(fs *flag.FlagSet, f *tenantsFlags) {
		fs.IntVar(&f.weight, "weight", 0, "the tenant's share of a saturated model against other tenants' (0 or unset: 1)")
	},
	"rate": func(fs *flag.FlagSet, f *tenantsFlags) {
		fs.Float64Var(&f.rate, "rate", 0, "requests per second across all models (0: no bound)")
	},
	"burst": func(fs *flag.FlagSet, f *tenantsFlags) {
		fs.IntVar(&f.burst, "burst", 0, "requests allowed at once above the rate (default: the rate, rounded up)")
	},
	"max-inflight": func(fs *flag.FlagSet, f *tenantsFlags) {
		fs.IntVar(&f.maxInFlight, "max-inflight", 0, "requests in flight across all models (0: no bound)")
	},
	"actions": func(fs *flag.FlagSet, f *tenantsFlags) {
		fs.StringVar(&f.actions, "actions", "", "what the grant allows: infer, metadata, admin, command, metrics, separated by commas")
	},
	"models": func(fs *flag.FlagSet, f *tenantsFlags) {
		fs.StringVar(&f.models, "models", "", "the models infer and metadata apply to, separated by commas; '*' for every model")
	},
	"selector": func(fs *flag.FlagSet, f *tenantsFlags) {
		fs.Var(&f.selectors, "selector", "the models infer and metadata apply to, by label: key=value[,key=value] (repeatable)")
	},
	"tenant": func(fs *flag.FlagSet, f *tenantsFlags) { fs.StringVar(&f.tenant, "tenant", "", "the tenant") },
	"name": func(fs *flag.FlagSet, f *tenantsFlags) {
		fs.StringVar(&f.name, "name", "", "the key's name, for people (\"ci\", \"laptop\")")
	},
	"expires": func(fs *flag.FlagSet, f *tenantsFlags) {
		fs.StringVar(&f.expires, "expires", "", "when the key stops working: a duration from now (720h, 30d) or an RFC 3339 time (default: never)")
	},
}

// tenantsCommand is one command: its words, positional arguments and
// flags.
type tenantsCommand struct {
	words []string
	args  []string
	flags []string
	run   func(c *tenantsCLI, pos []string) error
}

var limitFlags = []string{"weight", "rate", "burst", "max-inflight"}

var tenantsCommands = []tenantsCommand{
	{[]string{"tenants", "create"}, []string{"NAME"}, limitFlags, (*tenantsCLI).tenantsCreate},
	{[]string{"tenants", "update"}, []string{"NAME"}, limitFlags, (*tenantsCLI).tenantsUpdate},
	{[]string{"tenants", "list"}, nil, nil, (*tenantsCLI).tenantsList},
	{[]string{"tenants", "get"}, []string{"NAME"}, nil, (*tenantsCLI).tenantsGet},
	{[]string{"tenants", "delete"}, []string{"NAME"}, nil, (*tenantsCLI).tenantsDelete},
	{[]string{"tenants", "grant"}, []string{"NAME"}, []string{"actions", "models", "selector"}, (*tenantsCLI).tenantsGrant},
	{[]string{"tenants", "revoke-grant"}, []string{"ID"}, nil, (*tenantsCLI).tenantsRevokeGrant},
	{[]string{"keys", "create"}, nil, []string{"tenant", "name", "expires"}, (*tenantsCLI).keysCreate},
	{[]string{"keys", "list"}, nil, []string{"tenant"}, (*tenantsCLI).keysList},
	{[]string{"keys", "revoke"}, []string{"ID"}, nil, (*tenantsCLI).keysRevoke},
}

// tenantsManager is what the commands do, on the store (tenants.Store) or
// through the admin API (tenants.Client).
type tenantsManager interface {
	CreateTenant(context.Context, auth.Tenant) (tenants.TenantInfo, error)
	UpdateTenant(context.Context, string, tenants.TenantUpdate) (tenants.TenantInfo, error)
	DeleteTenant(context.Context, string) (tenants.DeleteResult, error)
	GetTenant(context.Context, string) (tenants.TenantInfo, error)
	ListTenants(context.Context) ([]tenants.TenantInfo, error)
	CreateKey(ctx context.Context, tenant, name string, expires time.Time) (string, tenants.KeyInfo, error)
	RevokeKey(context.Context, string) (tenants.KeyInfo, error)
	ListKeys(context.Context, string) ([]tenants.KeyInfo, error)
	AddGrant(context.Context, auth.Grant) (auth.Grant, error)
	RemoveGrant(context.Context, int64) (auth.Grant, error)
	ListGrants(context.Context, string) ([]auth.Grant, error)
}

// tenantsCLI is one run of a tenants or keys command.
type tenantsCLI struct {
	ctx            context.Context
	f              tenantsFlags
	set            map[string]bool // the flags given
	m              tenantsManager
	stdout, stderr io.Writer
}

func newTenantsFlagSet(name string, f *tenantsFlags, stderr io.Writer, names []string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.admin, "admin", "127.0.0.1:8090", "the gateway's admin address: HOST:PORT or a URL")
	fs.StringVar(&f.key, "key", "", "an API key with the admin grant, sent as a bearer token (default $INFERGATE_KEY, which ps does not show)")
	fs.StringVar(&f.dataDir, "data-dir", "", "open the store of this data directory (<dir>/infergate.db) instead of calling the admin API")
	fs.StringVar(&f.store, "store", "", "open this store (sqlite:///PATH or postgres://...) instead of calling the admin API")
	fs.StringVar(&f.output, "o", "table", "output: table or json")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON (-o json)")
	for _, n := range names {
		tenantsFlagDefs[n](fs, f)
	}
	return fs
}

// runTenants runs `infergate tenants ...` and `infergate keys ...`: group
// is "tenants" or "keys", args what follows it.
func runTenants(ctx context.Context, group string, args []string, stdout, stderr io.Writer) error {
	words, help, err := tenantsWords(args)
	if err != nil {
		fmt.Fprint(stderr, tenantsUsage)
		return fmt.Errorf("%s: %w", group, err)
	}
	words = append([]string{group}, words...)
	var cmd *tenantsCommand
	for i := range tenantsCommands {
		c := &tenantsCommands[i]
		if len(words) >= len(c.words) && slices.Equal(words[:len(c.words)], c.words) {
			cmd = c
			break
		}
	}
	if cmd == nil {
		fmt.Fprint(stderr, tenantsUsage)
		if help {
			return flag.ErrHelp
		}
		if len(words) == 1 {
			return fmt.Errorf("%s: say what to do, as in: infergate %s list", group, group)
		}
		return fmt.Errorf("%s: unknown command %q", group, words[1])
	}
	c := &tenantsCLI{ctx: ctx, stdout: stdout, stderr: stderr, set: map[string]bool{}}
	name := strings.Join(cmd.words, " ")
	fs := newTenantsFlagSet(name, &c.f, stderr, cmd.flags)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: infergate %s %s [flags]\nFlags may come before, between or after the arguments.\n", name, strings.Join(cmd.args, " "))
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	pos = pos[len(cmd.words)-1:]
	if len(pos) != len(cmd.args) {
		fs.Usage()
		if len(pos) < len(cmd.args) {
			return fmt.Errorf("%s: missing %s", name, strings.Join(cmd.args[len(pos):], " "))
		}
		return fmt.Errorf("%s: unexpected argument %q", name, pos[len(cmd.args)])
	}
	if c.f.asJSON {
		c.f.output = "json"
	}
	if c.f.output != "table" && c.f.output != "json" {
		return fmt.Errorf("%s: -o %q: want table or json", name, c.f.output)
	}
	closeStore, err := c.connect()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer closeStore()
	if err := cmd.run(c, pos); err != nil {
		shown := make([]string, len(pos))
		for i, p := range pos {
			shown[i] = redactToken(p)
		}
		return fmt.Errorf("%s: %w", strings.TrimSpace(name+" "+strings.Join(shown, " ")), err)
	}
	return nil
}

// redactToken hides what may be a whole API key token (given where its id
// was wanted), so that an error never repeats a secret.
func redactToken(s string) string {
	if strings.HasPrefix(s, auth.KeyPrefix) && len(s) > len(auth.KeyPrefix)+16 {
		return s[:len(auth.KeyPrefix)+16] + "_..."
	}
	return s
}

// tenantsWords finds the command words among args wherever the flags
// stand, parsing them with every flag of the commands. help says -h was
// among them.
func tenantsWords(args []string) (words []string, help bool, err error) {
	var f tenantsFlags
	fs := newTenantsFlagSet("tenants", &f, io.Discard, slices.Collect(maps.Keys(tenantsFlagDefs)))
	fs.Usage = func() {}
	return cliflags.Words(fs, args)
}

// connect chooses how to reach the tenants: the store itself with
// -data-dir or -store, else the admin API. The function it returns closes
// what it opened.
func (c *tenantsCLI) connect() (func(), error) {
	if !c.set["data-dir"] && !c.set["store"] {
		key := c.f.key
		if key == "" {
			key = adminKey(c.f.admin)
		}
		cl, err := tenants.NewClient(c.f.admin, tenants.ClientOptions{Key: key, Actor: osUser()})
		if err != nil {
			return nil, err
		}
		c.m = cl
		return func() {}, nil
	}
	if c.set["admin"] || c.set["key"] {
		return nil, errors.New("-data-dir and -store open the store itself: -admin and -key are for the admin API; give one or the other")
	}
	dataDir, cleanup := c.f.dataDir, func() {}
	if dataDir == "" {
		// Only -store: the registry wants a directory for artifacts, which
		// tenants never touch.
		tmp, err := os.MkdirTemp("", "infergate-tenants-")
		if err != nil {
			return nil, err
		}
		dataDir, cleanup = tmp, func() { os.RemoveAll(tmp) }
	}
	reg, err := registry.Open(c.ctx, registry.Options{DataDir: dataDir, Store: c.f.store})
	if err != nil {
		cleanup()
		return nil, err
	}
	s, err := tenants.Open(c.ctx, reg, tenants.Options{})
	if err != nil {
		reg.Close()
		cleanup()
		return nil, err
	}
	c.ctx = registry.WithActor(c.ctx, osUser())
	c.m = s
	return func() { reg.Close(); cleanup() }, nil
}

func (c *tenantsCLI) json() bool { return c.f.output == "json" }

// --- tenants

func (c *tenantsCLI) tenantsCreate(pos []string) error {
	t, err := c.m.CreateTenant(c.ctx, auth.Tenant{Name: pos[0], Weight: c.f.weight, RatePerSecond: c.f.rate, Burst: c.f.burst, MaxInFlight: c.f.maxInFlight})
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, t)
	}
	fmt.Fprintf(c.stdout, "tenant %s created: %s\n", t.Name, tenants.DescribeLimits(t))
	return nil
}

func (c *tenantsCLI) tenantsUpdate(pos []string) error {
	var u tenants.TenantUpdate
	if c.set["weight"] {
		u.Weight = &c.f.weight
	}
	if c.set["rate"] {
		u.RatePerSecond = &c.f.rate
	}
	if c.set["burst"] {
		u.Burst = &c.f.burst
	}
	if c.set["max-inflight"] {
		u.MaxInFlight = &c.f.maxInFlight
	}
	if u == (tenants.TenantUpdate{}) {
		return errors.New("say what to change: -weight, -rate, -burst or -max-inflight")
	}
	t, err := c.m.UpdateTenant(c.ctx, pos[0], u)
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, t)
	}
	fmt.Fprintf(c.stdout, "tenant %s: %s\n", t.Name, tenants.DescribeLimits(t))
	return nil
}

func (c *tenantsCLI) tenantsList([]string) error {
	ts, err := c.m.ListTenants(c.ctx)
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, nonNilSlice(ts))
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tWEIGHT\tRATE/S\tBURST\tIN FLIGHT\tKEYS\tGRANTS\tCREATED")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\n", t.Name, t.Weight, limit(t.RatePerSecond), limit(float64(t.Burst)), limit(float64(t.MaxInFlight)), t.ActiveKeys, t.Grants, when(t.Created))
	}
	return tw.Flush()
}

// limit shows a bound, "-" for none.
func limit(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func (c *tenantsCLI) tenantsGet(pos []string) error {
	t, err := c.m.GetTenant(c.ctx, pos[0])
	if err != nil {
		return err
	}
	keys, err := c.m.ListKeys(c.ctx, t.Name)
	if err != nil {
		return err
	}
	grants, err := c.m.ListGrants(c.ctx, t.Name)
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, tenants.TenantDetail{TenantInfo: t, Keys: nonNilSlice(keys), Grants: tenants.GrantInfos(grants)})
	}
	printFields(c.stdout, [][2]string{
		{"Name", t.Name}, {"Limits", tenants.DescribeLimits(t)}, {"Created", when(t.Created)},
	})
	fmt.Fprintln(c.stdout)
	c.printKeys(keys)
	fmt.Fprintln(c.stdout)
	c.printGrants(grants)
	return nil
}

func (c *tenantsCLI) tenantsDelete(pos []string) error {
	res, err := c.m.DeleteTenant(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, res)
	}
	fmt.Fprintf(c.stdout, "tenant %s deleted with %s\n", res.Tenant, tenants.DescribeDeleted(res))
	return nil
}

func (c *tenantsCLI) tenantsGrant(pos []string) error {
	if c.f.actions == "" {
		return errors.New("say what the grant allows with -actions (infer, metadata, admin, command, metrics)")
	}
	actions, err := tenants.ParseActions(c.f.actions)
	if err != nil {
		return err
	}
	g := auth.Grant{Tenant: pos[0], Actions: actions}
	for m := range strings.SplitSeq(c.f.models, ",") {
		if m = strings.TrimSpace(m); m != "" {
			g.Models = append(g.Models, m)
		}
	}
	var pairs []string
	for _, s := range c.f.selectors {
		pairs = append(pairs, strings.Split(s, ",")...)
	}
	if g.Selector, err = keyValues("-selector", pairs); err != nil {
		return err
	}
	g, err = c.m.AddGrant(c.ctx, g)
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, tenants.NewGrantInfo(g))
	}
	fmt.Fprintf(c.stdout, "grant %d added: tenant %s may %s\n", g.ID, g.Tenant, tenants.DescribeGrant(g))
	return nil
}

func (c *tenantsCLI) tenantsRevokeGrant(pos []string) error {
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil {
		return fmt.Errorf("grant id %q: want a number, as tenants get lists them", pos[0])
	}
	g, err := c.m.RemoveGrant(c.ctx, id)
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, tenants.NewGrantInfo(g))
	}
	fmt.Fprintf(c.stdout, "grant %d removed: tenant %s may no longer %s\n", g.ID, g.Tenant, tenants.DescribeGrant(g))
	return nil
}

func (c *tenantsCLI) printGrants(grants []auth.Grant) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT\tACTIONS\tMODELS")
	for _, g := range grants {
		models := "-"
		switch {
		case len(g.Models) == 1 && g.Models[0] == "*":
			models = "every model"
		case len(g.Models) > 0:
			models = strings.Join(g.Models, ",")
		case len(g.Selector) > 0:
			models = "labelled " + tenants.FormatSelector(g.Selector)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", g.ID, tenants.FormatActions(g.Actions), models)
	}
	tw.Flush()
}

// --- keys

func (c *tenantsCLI) keysCreate([]string) error {
	if c.f.tenant == "" {
		return errors.New("say whose key it is with -tenant")
	}
	expires, err := parseExpiry(c.f.expires, time.Now())
	if err != nil {
		return err
	}
	token, k, err := c.m.CreateKey(c.ctx, c.f.tenant, c.f.name, expires)
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, tenants.KeyCreated{Token: token, Key: k})
	}
	exp := "never expires"
	if !k.Expires.IsZero() {
		exp = "expires " + when(k.Expires)
	}
	// The token alone on stdout (TOKEN=$(infergate keys create ...)); the
	// words around it on stderr.
	fmt.Fprintf(c.stderr, "key %s created for tenant %s (%s). Its token follows; it is shown this once and cannot be shown again:\n", k.ID, k.Tenant, exp)
	fmt.Fprintln(c.stdout, token)
	return nil
}

// parseExpiry reads -expires: "" (never), a duration from now (720h, or
// days as 30d), or an RFC 3339 time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			return now.Add(time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("-expires %s: want a positive duration", s)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("-expires %q: want a duration from now (720h, 30d) or an RFC 3339 time (2027-01-01T00:00:00Z)", s)
	}
	return t, nil
}

func (c *tenantsCLI) keysList([]string) error {
	keys, err := c.m.ListKeys(c.ctx, c.f.tenant)
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, nonNilSlice(keys))
	}
	c.printKeys(keys)
	return nil
}

func (c *tenantsCLI) printKeys(keys []tenants.KeyInfo) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tTENANT\tNAME\tSTATE\tCREATED\tEXPIRES\tREVOKED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Tenant, dash(k.Name), k.State, when(k.Created), when(k.Expires), when(k.Revoked))
	}
	tw.Flush()
}

func (c *tenantsCLI) keysRevoke(pos []string) error {
	k, err := c.m.RevokeKey(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, k)
	}
	fmt.Fprintf(c.stdout, "key %s of tenant %s revoked at %s: it is refused from now on\n", k.ID, k.Tenant, when(k.Revoked))
	return nil
}

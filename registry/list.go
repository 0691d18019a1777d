package registry

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// qb builds a query with $n parameters.
type qb struct {
	sql  strings.Builder
	args []any
}

// arg adds a parameter and returns its placeholder.
func (b *qb) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

// pageSize applies the default and the bound of a page size or limit.
func pageSize(what string, n int) (int, error) {
	switch {
	case n == 0:
		return defaultPageSize, nil
	case n < 0 || n > maxPageSize:
		return 0, errorf(CodeInvalidArgument, "%s %d: want 1 to %d (0 means %d)", what, n, maxPageSize, defaultPageSize)
	}
	return n, nil
}

// likePrefix escapes p for LIKE ... ESCAPE '!' and appends the wildcard.
func likePrefix(p string) string {
	r := strings.NewReplacer("!", "!!", "%", "!%", "_", "!_")
	return r.Replace(p) + "%"
}

// pageToken is the position after which the next page starts. It is
// opaque to clients: base64url of this JSON.
type pageToken struct {
	List  string `json:"l"` // which list: "models" or "versions:<model>"
	Order Order  `json:"o"`
	Time  int64  `json:"t"`
	ID    int64  `json:"i"`
}

func (p pageToken) encode() string {
	b, _ := json.Marshal(p)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeToken reads a page token of list in order; "" is the first page
// (nil).
func decodeToken(tok, list string, order Order) (*pageToken, error) {
	if tok == "" {
		return nil, nil
	}
	bad := func(why string) (*pageToken, error) {
		return nil, errorf(CodeInvalidArgument, "pageToken %.40q: %s", tok, why)
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return bad("not a page token of this registry")
	}
	var p pageToken
	if err := json.Unmarshal(b, &p); err != nil {
		return bad("not a page token of this registry")
	}
	if p.List != list {
		return bad("a page token of another list (" + p.List + ")")
	}
	if p.Order != order {
		return bad("the token was made for order " + string(p.Order) + ", not " + string(order))
	}
	return &p, nil
}

// listClauses validates o and appends the shared filter, keyset and order
// clauses of a list to b: table alias t with columns state, create_time and
// id; labelTable(owner, key, value) holds the labels. It returns the page
// size.
func listClauses(b *qb, o ListOptions, list, t, labelTable, owner string) (int, error) {
	n, err := pageSize("pageSize", o.PageSize)
	if err != nil {
		return 0, err
	}
	order := o.Order
	if order == "" {
		order = OrderAsc
	}
	if order != OrderAsc && order != OrderDesc {
		return 0, errorf(CodeInvalidArgument, "order %q: want asc or desc", o.Order)
	}
	tok, err := decodeToken(o.PageToken, list, order)
	if err != nil {
		return 0, err
	}
	if o.State != "" {
		if !o.State.valid() {
			return 0, errorf(CodeInvalidArgument, "state %q: want LIVE or ARCHIVED", o.State)
		}
		b.sql.WriteString(" AND " + t + ".state = " + b.arg(string(o.State)))
	}
	if err := checkLabels("label filter", o.Labels); err != nil {
		return 0, err
	}
	keys := make([]string, 0, len(o.Labels))
	for k := range o.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.sql.WriteString(" AND EXISTS (SELECT 1 FROM " + labelTable + " l WHERE l." + owner + " = " + t + ".id AND l.key = " +
			b.arg(k) + " AND l.value = " + b.arg(o.Labels[k]) + ")")
	}
	cmp, dir := ">", "ASC"
	if order == OrderDesc {
		cmp, dir = "<", "DESC"
	}
	if tok != nil {
		b.sql.WriteString(" AND (" + t + ".create_time, " + t + ".id) " + cmp + " (" + b.arg(tok.Time) + ", " + b.arg(tok.ID) + ")")
	}
	b.sql.WriteString(" ORDER BY " + t + ".create_time " + dir + ", " + t + ".id " + dir + " LIMIT " + b.arg(n+1))
	return n, nil
}

// nextToken returns the token of the page after one whose last row is
// (createTime, id), or "" when there is none (more is false).
func nextToken(more bool, list string, order Order, createTime, id int64) string {
	if !more {
		return ""
	}
	if order == "" {
		order = OrderAsc
	}
	return pageToken{List: list, Order: order, Time: createTime, ID: id}.encode()
}

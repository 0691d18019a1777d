// Package cliflags holds what infergate's subcommands share in parsing
// their arguments.
package cliflags

import "flag"

// ParseInterspersed parses args with fs wherever the flags stand among the
// positional arguments, which it returns in order: the flag package alone
// stops at the first positional argument. The argument right after "--"
// is positional even if it starts with "-". Each round consumes at least
// one argument, so it ends.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

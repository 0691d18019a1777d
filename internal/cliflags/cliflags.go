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

// Words finds a subcommand's words among args wherever its flags stand,
// parsing them with fs (which should know every flag of the subcommand's
// commands, so that a flag's value is not taken for a word). help reports
// that -h, -help or --help was among them; they are not given to fs.
func Words(fs *flag.FlagSet, args []string) (words []string, help bool, err error) {
	var rest []string
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			help = true
		default:
			rest = append(rest, a)
		}
	}
	words, err = ParseInterspersed(fs, rest)
	return words, help, err
}

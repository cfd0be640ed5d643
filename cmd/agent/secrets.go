package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/internal/atomicfile"
	"github.com/outpost-gitops/outpost/internal/spec"
)

func newSecretsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Keys and recipients of the repository's encrypted files",
		Long: `Secrets manages what the agent decrypts the repository's encrypted files
with (age files and SOPS files): the host's own age key, the fleet's
recipients as the hosts' notes name them, encryption to the hosts a
selector picks, and a check for CI. See docs/secrets.md.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newSecretsKeyCmd(g), newSecretsRecipientsCmd(g), newSecretsEncryptCmd(g), newSecretsCheckCmd(g))
	return cmd
}

// selectFlag reads --select k=v,k2=v2.
func selectFlag(cmd *cobra.Command, p *[]string) {
	cmd.Flags().StringArrayVar(p, "select", nil, "only the hosts with the label `key=value` (repeatable, or comma-separated)")
}

func parseSelect(items []string) (map[string]string, error) {
	sel := map[string]string{}
	for _, it := range items {
		for _, l := range strings.Split(it, ",") {
			k, v, err := agent.ParseLabel(l)
			if err != nil {
				return nil, usageError{fmt.Errorf("--select: %w", err)}
			}
			sel[k] = v
		}
	}
	return sel, nil
}

func newSecretsKeyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "key",
		Short: "Make this host's age key if it is missing, and print its recipient",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.config(cmd)
			if err != nil {
				return err
			}
			r, err := agent.EnsureSecretKey(cfg)
			if err != nil {
				return err
			}
			if r == "" {
				return fmt.Errorf("secrets.identities names other keys than the host's own: nothing to make")
			}
			_, err = fmt.Fprintln(g.stdout, r)
			return err
		},
	}
}

func newSecretsRecipientsCmd(g *globals) *cobra.Command {
	var sel []string
	cmd := &cobra.Command{
		Use:   "recipients",
		Short: "List the recipients of the hosts a selector picks, from their notes, and the admins'",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.config(cmd)
			if err != nil {
				return err
			}
			s, err := parseSelect(sel)
			if err != nil {
				return err
			}
			rs, err := agent.SecretRecipients(cmd.Context(), cfg, s)
			if err != nil {
				return err
			}
			if g.json {
				return agent.WriteJSON(g.stdout, rs)
			}
			return writeRecipients(g.stdout, rs)
		},
	}
	selectFlag(cmd, &sel)
	return cmd
}

func writeRecipients(w io.Writer, rs *agent.Recipients) error {
	q := spec.Quote
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tRECIPIENT")
	for _, a := range rs.Admins {
		fmt.Fprintf(tw, "(admin)\t%s\n", q(a))
	}
	for _, h := range rs.Hosts {
		if len(h.Recipients) == 0 {
			fmt.Fprintf(tw, "%s\t- (no recipient in its note)\n", q(h.Host))
		}
		for _, r := range h.Recipients {
			fmt.Fprintf(tw, "%s\t%s\n", q(h.Host), q(r))
		}
	}
	return tw.Flush()
}

func newSecretsEncryptCmd(g *globals) *cobra.Command {
	var sel []string
	var out string
	cmd := &cobra.Command{
		Use:   "encrypt FILE",
		Short: "Encrypt FILE to the hosts a selector picks and the admins, as FILE.age",
		Long: `Encrypt reads FILE (- for standard input) and writes FILE.age (or --out),
armored, encrypted to the recipients of the hosts that --select picks (from
their notes) and to the admins of .outpost/recipients, and beside it
FILE.age.recipients, which names them for outpost secrets check. It never
overwrites an existing file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.config(cmd)
			if err != nil {
				return err
			}
			s, err := parseSelect(sel)
			if err != nil {
				return err
			}
			var plain []byte
			if args[0] == "-" {
				plain, err = io.ReadAll(io.LimitReader(os.Stdin, spec.DefaultMaxFileSize+1))
			} else {
				plain, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			if out == "" {
				if args[0] == "-" {
					return usageError{fmt.Errorf("--out is needed with -")}
				}
				out = args[0] + ".age"
			}
			for _, p := range []string{out, out + agent.RecipientsSuffix} {
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("%s exists: remove it first", p)
				}
			}
			ct, rs, err := agent.EncryptSecret(cmd.Context(), cfg, s, plain)
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(out, ct, 0o644, atomicfile.Options{}); err != nil {
				return err
			}
			if err := atomicfile.WriteFile(out+agent.RecipientsSuffix, agent.RecipientsList(rs), 0o644, atomicfile.Options{}); err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "%s: encrypted to %d recipients\n", out, len(rs))
			return err
		},
	}
	selectFlag(cmd, &sel)
	cmd.Flags().StringVar(&out, "out", "", "write the ciphertext to `FILE` (default: FILE.age)")
	return cmd
}

func newSecretsCheckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Fail when a host that a resource sends a secret to cannot decrypt it",
		Long: `Check renders the branch's tip for every host of the notes and, for each
encrypted file that a host's resources use, checks that the file is
encrypted to one of the host's recipients (SOPS files name theirs; an age
file's are in FILE.age.recipients). Exit status: 0 every host can, 1 some
host cannot (each is listed), 2 error. For CI, before a merge.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.config(cmd)
			if err != nil {
				return err
			}
			problems, checked, err := agent.CheckSecrets(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if g.json {
				err = agent.WriteJSON(g.stdout, struct {
					Checked  int                   `json:"checked"`
					Problems []agent.SecretProblem `json:"problems"`
				}{checked, problems})
			} else {
				q := spec.Quote
				for _, p := range problems {
					fmt.Fprintf(g.stdout, "%s: %s needs %s: %s\n", q(p.Host), q(p.Resource), q(p.File), q(p.Problem))
				}
				fmt.Fprintf(g.stdout, "%d uses of encrypted files checked, %d problems\n", checked, len(problems))
			}
			if err != nil {
				return err
			}
			if len(problems) > 0 {
				return exitStatus(1)
			}
			return nil
		},
	}
}

package main

import (
	"fmt"
	"runtime"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/spf13/cobra"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Outpost's version, Go version and platform",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := struct {
				Version  string `json:"version"`
				Go       string `json:"go"`
				Platform string `json:"platform"`
			}{agent.Version, runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH}
			if g.json {
				return agent.WriteJSON(g.stdout, v)
			}
			_, err := fmt.Fprintf(g.stdout, "outpost %s (%s, %s)\n", v.Version, v.Go, v.Platform)
			return err
		},
	}
}

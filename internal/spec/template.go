package spec

import (
	"bytes"
	"errors"
	"fmt"
	"text/template"
	"text/template/parse"
)

// Templates see only the host (.Host.Name, .Host.Labels) and text/template's
// builtin functions, none of which does I/O. To bound their running time
// as well as their output, a template may not define or call other
// templates (exponential expansion), may range only over fields of its data
// (never over a number it computes), and may nest range at most
// maxRangeDepth deep; its output is capped at the file size limit.
const maxRangeDepth = 2

// templateData is what a template sees.
type templateData struct {
	Host templateHost
}

type templateHost struct {
	Name   string
	Labels map[string]string
}

// parseTemplate parses text as a template named name and checks it against
// the rules above.
func parseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	for _, tt := range t.Templates() {
		if tt.Name() != name {
			return nil, fmt.Errorf("template: %s: define and block are not allowed", name)
		}
	}
	if t.Tree == nil || t.Tree.Root == nil {
		return t, nil
	}
	if err := checkNode(t.Tree, t.Tree.Root, 0); err != nil {
		return nil, err
	}
	return t, nil
}

func checkNode(tree *parse.Tree, n parse.Node, ranges int) error {
	fail := func(n parse.Node, msg string) error {
		return fmt.Errorf("template: %s: %s", locationOf(tree, n), msg)
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkNode(tree, c, ranges); err != nil {
				return err
			}
		}
	case *parse.TemplateNode:
		return fail(n, "{{template}} is not allowed")
	case *parse.RangeNode:
		if ranges+1 > maxRangeDepth {
			return fail(n, fmt.Sprintf("range nested more than %d deep", maxRangeDepth))
		}
		if !dataPipe(n.Pipe) {
			return fail(n, "range may only go over a field of the data, such as .Host.Labels")
		}
		if err := checkNode(tree, n.List, ranges+1); err != nil {
			return err
		}
		return checkNode(tree, n.ElseList, ranges)
	case *parse.IfNode:
		if err := checkNode(tree, n.List, ranges); err != nil {
			return err
		}
		return checkNode(tree, n.ElseList, ranges)
	case *parse.WithNode:
		if err := checkNode(tree, n.List, ranges); err != nil {
			return err
		}
		return checkNode(tree, n.ElseList, ranges)
	}
	return nil
}

// locationOf returns "name:line:col" of n.
func locationOf(tree *parse.Tree, n parse.Node) string {
	loc, _ := tree.ErrorContext(n)
	return loc
}

// dataPipe reports whether p is a plain field chain of the data, like
// .Host.Labels or $.Host.Labels, with no function call or argument.
func dataPipe(p *parse.PipeNode) bool {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return false
	}
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.FieldNode:
		return len(a.Ident) > 0
	case *parse.VariableNode:
		return len(a.Ident) > 1 && a.Ident[0] == "$"
	}
	return false
}

// errOutputLimit stops a template whose output passes the size limit.
var errOutputLimit = errors.New("output larger than the size limit")

// cappedBuffer is a bytes.Buffer that refuses to grow past max.
type cappedBuffer struct {
	bytes.Buffer
	max int64
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if int64(b.Len())+int64(len(p)) > b.max {
		return 0, errOutputLimit
	}
	return b.Buffer.Write(p)
}

// execTemplate renders t for host, with at most limit bytes of output.
func execTemplate(t *template.Template, host Host, limit int64) ([]byte, error) {
	labels := make(map[string]string, len(host.Labels))
	for k, v := range host.Labels {
		labels[k] = v
	}
	buf := &cappedBuffer{max: limit}
	err := t.Execute(buf, templateData{Host: templateHost{Name: host.Name, Labels: labels}})
	if err != nil {
		if errors.Is(err, errOutputLimit) {
			return nil, fmt.Errorf("template: %s: output larger than %d bytes", t.Name(), limit)
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

package spec

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"text/template"
	"text/template/parse"
)

// Templates see only the host (.Host.Name, .Host.Labels) and text/template's
// builtin functions, none of which does I/O. To bound their running time
// as well as their output, a template may not define or call other
// templates (exponential expansion), may range only over fields of its data
// (never over a number it computes), and may nest range at most
// maxRangeDepth deep; its output is capped at the file size limit, and the
// work of every template rendered for one host shares one budget (below).
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
	t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{"secret": noSecret}).Parse(text)
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

// noSecret stands for the secret function until a render binds it.
func noSecret(string, ...string) (string, error) { return "", errors.New("secret: not bound") }

// secretCalls returns the files that a template's secret calls name; each
// must be a literal string, so that Load reads the file.
func secretCalls(t *template.Template) ([]string, error) {
	if t.Tree == nil || t.Tree.Root == nil {
		return nil, nil
	}
	var files []string
	var err error
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					walk(c)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n != nil {
				for _, c := range n.Cmds {
					walk(c)
				}
			}
		case *parse.CommandNode:
			if id, ok := n.Args[0].(*parse.IdentifierNode); ok && id.Ident == "secret" {
				s, ok := argAt(n, 1)
				if !ok && err == nil {
					err = fmt.Errorf("template: %s: secret takes a file named by a literal string", locationOf(t.Tree, n))
				}
				files = append(files, s)
			}
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		}
	}
	walk(t.Tree.Root)
	return files, err
}

// argAt returns the literal string argument i of a command.
func argAt(n *parse.CommandNode, i int) (string, bool) {
	if len(n.Args) <= i {
		return "", false
	}
	s, ok := n.Args[i].(*parse.StringNode)
	if !ok {
		return "", false
	}
	return s.Text, true
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

// Budgets of template work. A template's functions can make values far
// larger than its output (printf "%0999999d", or js of js of js...), so
// every function that can grow a value is replaced by one that computes the
// largest result it could make, and refuses before allocating it when that
// is larger than the file size limit or than what is left of the budget of
// the host's render. Every value made and every byte written counts against
// the budget, so memory stays near the budget whatever the template does.
const (
	// DefaultTemplateBudget is the bytes that all the templates rendered
	// for one host may make in all, values and output together.
	DefaultTemplateBudget = 2 * DefaultMaxFileSize
	// maxTemplateSteps bounds the function calls and writes of one host's
	// render, so that time is bounded as well as memory.
	maxTemplateSteps = 10_000_000
)

// ErrTemplateBudget is matched by errors.Is for a template that passed a
// budget: its output, a value it made, or the work of the host's render.
var ErrTemplateBudget = errors.New("template budget exceeded")

// budget is what is left of one render's template work. A render is
// sequential, so it needs no lock.
type budget struct {
	total, bytes int64
	valueMax     int64
	steps        int64
}

func newBudget(total, valueMax int64) *budget {
	return &budget{total: total, bytes: total, valueMax: valueMax, steps: maxTemplateSteps}
}

// charge takes n bytes and one step from b, or says why it cannot.
func (b *budget) charge(what string, n int64) error {
	if n > b.valueMax {
		return fmt.Errorf("%w: %s would make up to %d bytes, more than the limit of %d", ErrTemplateBudget, what, n, b.valueMax)
	}
	b.steps--
	if b.steps < 0 {
		return fmt.Errorf("%w: more than %d steps for this host", ErrTemplateBudget, maxTemplateSteps)
	}
	b.bytes -= n
	if b.bytes < 0 {
		return fmt.Errorf("%w: templates for this host make more than %d bytes in all", ErrTemplateBudget, b.total)
	}
	return nil
}

// funcs are bounded replacements for text/template's builtins that can make
// a value larger than their arguments. The others (index, slice, len, and,
// or, not, the comparisons) only select or compare, and call has no function
// to call in a template's data.
func (b *budget) funcs() template.FuncMap {
	return template.FuncMap{
		"printf":   b.printf,
		"print":    b.print,
		"println":  b.println,
		"html":     b.escaper("html", 6, template.HTMLEscaper),
		"js":       b.escaper("js", 6, template.JSEscaper),
		"urlquery": b.escaper("urlquery", 3, template.URLQueryEscaper),
	}
}

// sizeOf is the length of v as fmt prints it with %v. A value a template can
// hold is a string (bounded by this budget), or a number, boolean or part of
// the host's data, whose printed form is small.
func sizeOf(v any) int64 {
	switch v := v.(type) {
	case string:
		return int64(len(v))
	case []byte:
		return int64(len(v))
	case nil:
		return 5
	}
	return int64(len(fmt.Sprint(v)))
}

func sizeOfAll(args []any) int64 {
	var n int64
	for _, a := range args {
		n += sizeOf(a) + 1
	}
	return n
}

// escaper bounds an escaping builtin whose output is at most grow times its
// input (html: '"' becomes "&#34;"; js: '<' becomes "\u003C").
func (b *budget) escaper(name string, grow int64, f func(...any) string) func(...any) (string, error) {
	return func(args ...any) (string, error) {
		if err := b.charge(name, grow*sizeOfAll(args)); err != nil {
			return "", err
		}
		return f(args...), nil
	}
}

func (b *budget) print(args ...any) (string, error) {
	if err := b.charge("print", sizeOfAll(args)); err != nil {
		return "", err
	}
	return fmt.Sprint(args...), nil
}

func (b *budget) println(args ...any) (string, error) {
	if err := b.charge("println", sizeOfAll(args)+1); err != nil {
		return "", err
	}
	return fmt.Sprintln(args...), nil
}

func (b *budget) printf(format string, args ...any) (string, error) {
	if err := b.charge("printf", printfSize(format, args)); err != nil {
		return "", err
	}
	return fmt.Sprintf(format, args...), nil
}

// fmtMaxNum is the largest width or precision fmt accepts: it stops
// reading digits once the number passes 1e6, so one more digit gets in.
const fmtMaxNum = 1e6*10 + 9

// printfSize is an upper bound on the length of fmt.Sprintf(format,
// args...), computed without formatting. Each verb may pad to its width,
// add its precision in digits, and print its argument up to four times over
// (%q of a control byte is \x00; % x of a byte is three); with explicit
// argument indexes ("%[1]s") any verb may print any argument.
func printfSize(format string, args []any) int64 {
	var verbs, pad int64
	indexed := false
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		// fmt's grammar: flags, [n], width, .precision with its own
		// [n], [n], then the verb, one rune, where i stops.
		i++
		for i < len(format) && strings.IndexByte("#0+- ", format[i]) >= 0 {
			i++
		}
		var n int64
		i = skipArgIndex(format, i, &indexed)
		n, i = printfNum(format, i)
		pad += n
		if i < len(format) && format[i] == '.' {
			i = skipArgIndex(format, i+1, &indexed)
			n, i = printfNum(format, i)
			pad += n
		}
		i = skipArgIndex(format, i, &indexed)
		verbs++
		pad += 16 // "%!d(MISSING)", "%!(NOVERB)" and their kin
	}
	var argSize, leaves int64 = 0, 1
	for _, a := range args {
		argSize += printfArgSize(a)
		leaves = max(leaves, leavesOf(reflect.ValueOf(a)))
	}
	// A verb pads each element of a slice, map or struct to its width.
	pad *= leaves
	if indexed {
		argSize *= max(verbs, 1)
	}
	return int64(len(format)) + pad + argSize
}

// skipArgIndex steps over an explicit argument index ("[2]") at i, as fmt
// does: to its closing bracket whatever lies inside, or over the bracket
// alone when none closes it.
func skipArgIndex(format string, i int, indexed *bool) int {
	if i >= len(format) || format[i] != '[' {
		return i
	}
	*indexed = true
	if j := strings.IndexByte(format[i:], ']'); j > 0 {
		return i + j + 1
	}
	return i + 1
}

// printfNum reads a width or precision at i: digits, or '*' for one taken
// from an argument, which fmt refuses past 1e6 either way (a negative width
// pads on the right).
func printfNum(format string, i int) (int64, int) {
	if i < len(format) && format[i] == '*' {
		return 1e6, i + 1
	}
	n := int64(0)
	for ; i < len(format) && format[i] >= '0' && format[i] <= '9'; i++ {
		if n <= fmtMaxNum {
			n = n*10 + int64(format[i]-'0')
		}
	}
	return min(n, fmtMaxNum), i
}

// printfArgSize bounds what one verb prints of v: a string up to four times
// over (%q of a control byte is \\x00) plus a bad verb's "%!A(string=)"; a
// byte slice per byte ("%!A(uint8=48)"); anything else, a number, a boolean
// or the host's data, within four times its Go syntax, which names every
// element's type or quotes it.
func printfArgSize(v any) int64 {
	switch v := v.(type) {
	case string:
		return 4*int64(len(v)) + 16
	case []byte:
		return 16*int64(len(v)) + 16
	}
	return 4*int64(len(fmt.Sprintf("%#v", v))) + 32
}

// leavesOf counts the scalars in v, each of which a verb formats (and pads)
// on its own. Values in templates are strings, numbers or the host's data,
// so this is small.
func leavesOf(v reflect.Value) int64 {
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		n := int64(0)
		for i := range v.Len() {
			n += leavesOf(v.Index(i))
		}
		return max(n, 1)
	case reflect.Map:
		n := int64(0)
		for it := v.MapRange(); it.Next(); {
			n += leavesOf(it.Key()) + leavesOf(it.Value())
		}
		return max(n, 1)
	case reflect.Struct:
		n := int64(0)
		for i := range v.NumField() {
			n += leavesOf(v.Field(i))
		}
		return max(n, 1)
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return leavesOf(v.Elem())
		}
	}
	return 1
}

// errOutputLimit stops a template whose output passes the size limit.
var errOutputLimit = errors.New("output larger than the size limit")

// cappedBuffer is a bytes.Buffer that refuses to grow past max, and charges
// what it writes to the render's budget.
type cappedBuffer struct {
	bytes.Buffer
	max    int64
	budget *budget
	err    error // the budget's refusal, which text/template does not pass on
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if int64(b.Len())+int64(len(p)) > b.max {
		return 0, errOutputLimit
	}
	if err := b.budget.charge("output", int64(len(p))); err != nil {
		b.err = err
		return 0, err
	}
	return b.Buffer.Write(p)
}

// execTemplate renders t for host, with at most limit bytes of output, and
// charges its work to b.
func execTemplate(t *template.Template, host Host, limit int64, b *budget, extra template.FuncMap) ([]byte, error) {
	labels := make(map[string]string, len(host.Labels))
	for k, v := range host.Labels {
		labels[k] = v
	}
	// The functions are bound to this render's budget; a clone keeps the
	// Repo's template safe for concurrent renders.
	t, err := t.Clone()
	if err != nil {
		return nil, err
	}
	t.Funcs(b.funcs())
	if extra != nil {
		t.Funcs(extra)
	}
	buf := &cappedBuffer{max: limit, budget: b}
	err = t.Execute(buf, templateData{Host: templateHost{Name: host.Name, Labels: labels}})
	if err != nil {
		switch {
		case errors.Is(err, errOutputLimit):
			return nil, fmt.Errorf("template: %s: %w: output larger than %d bytes", t.Name(), ErrTemplateBudget, limit)
		case buf.err != nil:
			return nil, fmt.Errorf("template: %s: %w", t.Name(), buf.err)
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

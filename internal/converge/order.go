package converge

import (
	"container/heap"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// sortResources orders rs for applying: every resource after what it names in
// after and restart_on, and otherwise by kind in spec.Kinds order and then in
// the order of rs. The order is stable: the same input gives the same order.
// Resources on a cycle (which validation rejects) come back in cyclic.
func sortResources(rs []*spec.Resource) (order, cyclic []*spec.Resource) {
	index := make(map[spec.ID]int, len(rs))
	for i, r := range rs {
		index[r.ID] = i
	}
	indeg := make([]int, len(rs))
	next := make([][]int, len(rs))
	edge := func(from spec.ID, to int) {
		i, ok := index[from]
		if !ok || i == to {
			return
		}
		next[i] = append(next[i], to)
		indeg[to]++
	}
	for i, r := range rs {
		for _, d := range r.After {
			edge(d, i)
		}
		for _, d := range r.RestartOn {
			edge(d, i)
		}
	}
	q := &ready{rs: rs}
	for i := range rs {
		if indeg[i] == 0 {
			q.idx = append(q.idx, i)
		}
	}
	heap.Init(q)
	order = make([]*spec.Resource, 0, len(rs))
	for q.Len() > 0 {
		i := heap.Pop(q).(int)
		order = append(order, rs[i])
		for _, j := range next[i] {
			if indeg[j]--; indeg[j] == 0 {
				heap.Push(q, j)
			}
		}
	}
	if len(order) < len(rs) {
		for i, r := range rs {
			if indeg[i] > 0 {
				cyclic = append(cyclic, r)
			}
		}
	}
	return order, cyclic
}

// ready is a heap of the indexes of resources whose dependencies are done,
// lowest kind first, then lowest index.
type ready struct {
	rs  []*spec.Resource
	idx []int
}

func (q *ready) Len() int { return len(q.idx) }
func (q *ready) Less(a, b int) bool {
	i, j := q.idx[a], q.idx[b]
	ki, kj := kindRank(q.rs[i].ID.Kind), kindRank(q.rs[j].ID.Kind)
	if ki != kj {
		return ki < kj
	}
	return i < j
}
func (q *ready) Swap(a, b int) { q.idx[a], q.idx[b] = q.idx[b], q.idx[a] }
func (q *ready) Push(x any)    { q.idx = append(q.idx, x.(int)) }
func (q *ready) Pop() any {
	n := len(q.idx) - 1
	x := q.idx[n]
	q.idx = q.idx[:n]
	return x
}

func kindRank(k spec.Kind) int { return spec.Rank(k) }

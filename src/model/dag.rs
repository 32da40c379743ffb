//! Graph algorithms over stage indices: cycles (with their full path) and
//! topological order. Iterative, so a 10,000-stage chain does not recurse.

/// Every cycle reachable in the graph, each as the path of nodes that closes
/// it (`[a, b, c]` means a → b → c → a). `deps[i]` are the nodes `i` depends
/// on. Each node is reported in at most one cycle.
pub fn cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut mark = vec![Mark::New; deps.len()];
    let mut found = Vec::new();
    for root in 0..deps.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // (node, next edge to look at)
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::OnStack;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            if let Some(&next) = deps[node].get(*edge) {
                *edge += 1;
                match mark[next] {
                    Mark::New => {
                        mark[next] = Mark::OnStack;
                        stack.push((next, 0));
                    }
                    Mark::OnStack => {
                        let start = stack.iter().position(|&(n, _)| n == next).unwrap_or(0);
                        found.push(stack[start..].iter().map(|&(n, _)| n).collect());
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    found
}

/// Nodes in an order where each comes after its dependencies, ties broken by
/// index. `None` when there is a cycle.
pub fn topo_order(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    let n = deps.len();
    let mut indegree = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            indegree[i] += 1;
            dependents[d].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    (order.len() == n).then_some(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_whole_cycle_path() {
        // 0 → 1 → 2 → 0, and 3 depends on the cycle.
        let deps = vec![vec![1], vec![2], vec![0], vec![0]];
        assert_eq!(cycles(&deps), vec![vec![0, 1, 2]]);
        assert_eq!(topo_order(&deps), None);
    }

    #[test]
    fn self_loop_is_a_cycle() {
        assert_eq!(cycles(&[vec![0]]), vec![vec![0]]);
    }

    #[test]
    fn orders_dependencies_first() {
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2]];
        assert!(cycles(&deps).is_empty());
        assert_eq!(topo_order(&deps), Some(vec![0, 1, 2, 3]));
    }

    #[test]
    fn long_chain_does_not_overflow() {
        let deps: Vec<Vec<usize>> = (0..100_000)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        assert!(cycles(&deps).is_empty());
    }
}

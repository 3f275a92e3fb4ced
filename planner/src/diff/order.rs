//! Orders the changes: a dependency graph (petgraph) whose edges mean "must run before".
//!
//! Every change gets a [`Rank`], its coarse phase: renames, then drops of things that hang
//! off tables (views first), then creations and alterations from schemas down to comments,
//! then drops of the objects tables use (functions, sequences, types, extensions, schemas).
//! Between ranks the order is implied by the rank; explicit edges carry the finer
//! dependencies (view on view, partition on parent, foreign key on the referenced key,
//! `OWNED BY` on the column). The output is a topological order that breaks ties by
//! (rank, object, insertion order), so it is deterministic and reads in phase order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use super::{Change, ChangeKind, DiffError};
use crate::ident::QualName;

/// The phase of a change. Declaration order is execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rank {
    RenameTable,
    RenameColumn,
    DropView,
    DropTrigger,
    DropRule,
    DropPolicy,
    DropForeignKey,
    DropConstraint,
    DropIndex,
    DisownSequence,
    DropColumn,
    DetachPartition,
    DropTable,
    DropReplacedFunction,
    DropReplacedType,
    CreateSchema,
    Extension,
    CreateEnum,
    AlterEnum,
    CreateDomain,
    AlterDomain,
    CreateComposite,
    AlterComposite,
    Sequence,
    Function,
    CreateTable,
    AlterTable,
    AddColumn,
    AlterColumn,
    AttachPartition,
    CreateIndex,
    AddKey,
    AddConstraint,
    AddForeignKey,
    Validate,
    /// A constraint built beside its old definition takes its place (drop + rename, one
    /// transaction); a changed index built beside replaces the old one.
    SwapConstraint,
    /// Foreign keys re-added NOT VALID when the key they reference was swapped are validated.
    ValidateFollowers,
    DropReplacedIndex,
    RenameReplacedIndex,
    OwnSequence,
    View,
    ViewIndex,
    /// A view built beside the one it replaces takes its name (drop + renames, one
    /// transaction).
    SwapView,
    Trigger,
    Rule,
    Policy,
    TableLate,
    Comment,
    DropFunction,
    DropSequence,
    DropComposite,
    DropDomain,
    DropEnum,
    DropExtension,
    DropSchema,
}

/// Tie-breaking order among changes that are ready: rank, object label, insertion order.
type SortKey = (Rank, String, usize);

struct Node {
    change: Change,
    rank: Rank,
}

/// The changes collected so far, with their dependencies.
#[derive(Default)]
pub(crate) struct Changes {
    nodes: Vec<Node>,
    /// Dependency key ("view public.v") -> changes that make it exist.
    provides: BTreeMap<String, Vec<usize>>,
    /// (change, key it needs).
    needs: Vec<(usize, String)>,
    /// (before, after).
    edges: Vec<(usize, usize)>,
}

/// A change under construction; finished by [`Changes::push`].
pub(crate) struct Draft {
    pub kind: ChangeKind,
    pub object: String,
    pub description: String,
    pub table: Option<QualName>,
    pub sql: Vec<String>,
    pub transactional: bool,
}

impl Draft {
    pub fn new(kind: ChangeKind, object: String, description: String) -> Draft {
        Draft {
            kind,
            object,
            description,
            table: None,
            sql: Vec::new(),
            transactional: true,
        }
    }

    pub fn table(mut self, table: &QualName) -> Draft {
        self.table = Some(table.clone());
        self
    }

    pub fn sql(mut self, statement: String) -> Draft {
        self.sql.push(statement);
        self
    }

    /// Marks the change as one that must run outside a transaction block.
    pub fn non_transactional(mut self) -> Draft {
        self.transactional = false;
        self
    }
}

impl Changes {
    /// Adds a change (ignored when it has no statements) and returns its id.
    pub fn push(&mut self, rank: Rank, draft: Draft) -> Option<usize> {
        if draft.sql.is_empty() {
            return None;
        }
        let change = Change {
            description: draft.description,
            kind: draft.kind,
            object: draft.object,
            table: draft.table,
            sql: draft.sql,
            transactional: draft.transactional,
        };
        self.nodes.push(Node { change, rank });
        Some(self.nodes.len() - 1)
    }

    /// Declares that change `id` makes `key` exist (or changes it).
    pub fn provide(&mut self, id: Option<usize>, key: impl Into<String>) {
        if let Some(id) = id {
            self.provides.entry(key.into()).or_default().push(id);
        }
    }

    /// Declares that change `id` must run after every change providing `key`.
    pub fn need(&mut self, id: Option<usize>, key: impl Into<String>) {
        if let Some(id) = id {
            self.needs.push((id, key.into()));
        }
    }

    /// Declares that `before` must run before `after`.
    pub fn before(&mut self, before: Option<usize>, after: Option<usize>) {
        if let (Some(a), Some(b)) = (before, after) {
            self.edges.push((a, b));
        }
    }

    /// The changes in execution order, or the objects of a dependency cycle.
    pub fn order(self) -> Result<Vec<Change>, DiffError> {
        // Node weights: `Some(change)` or `None` for a barrier between two ranks.
        let mut graph: DiGraph<Option<usize>, ()> = DiGraph::new();
        let ix: Vec<NodeIndex> = (0..self.nodes.len())
            .map(|i| graph.add_node(Some(i)))
            .collect();
        // Ranks are edges too: all changes of one rank run before a barrier node, and the
        // barrier before all changes of the next rank (linear, where all pairs would not be).
        let mut by_rank: Vec<usize> = (0..self.nodes.len()).collect();
        by_rank.sort_by_key(|&i| self.nodes[i].rank);
        let groups: Vec<&[usize]> = by_rank
            .chunk_by(|&a, &b| self.nodes[a].rank == self.nodes[b].rank)
            .collect();
        let mut barrier_rank: BTreeMap<NodeIndex, Rank> = BTreeMap::new();
        for pair in groups.windows(2) {
            let barrier = graph.add_node(None);
            barrier_rank.insert(barrier, self.nodes[pair[0][0]].rank);
            for &a in pair[0] {
                graph.add_edge(ix[a], barrier, ());
            }
            for &b in pair[1] {
                graph.add_edge(barrier, ix[b], ());
            }
        }
        for (id, key) in &self.needs {
            for &p in self.provides.get(key).into_iter().flatten() {
                if p != *id {
                    graph.update_edge(ix[p], ix[*id], ());
                }
            }
        }
        for &(a, b) in &self.edges {
            if a != b {
                graph.update_edge(ix[a], ix[b], ());
            }
        }

        if toposort(&graph, None).is_err() {
            let mut names: Vec<String> = tarjan_scc(&graph)
                .into_iter()
                .find(|scc| scc.len() > 1)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|n| graph[n].map(|i| self.nodes[i].change.object.clone()))
                .collect();
            names.sort();
            names.dedup();
            return Err(DiffError::Cycle(names));
        }

        // toposort's DFS order is valid but does not follow the phases among independent
        // changes; Kahn's algorithm with a priority queue gives the readable, stable order.
        let key = |n: NodeIndex| match graph[n] {
            Some(i) => (self.nodes[i].rank, self.nodes[i].change.object.clone(), i),
            None => (barrier_rank[&n], String::new(), usize::MAX),
        };
        let mut indegree: Vec<usize> = graph
            .node_indices()
            .map(|n| graph.neighbors_directed(n, Direction::Incoming).count())
            .collect();
        let mut ready: BinaryHeap<Reverse<(SortKey, NodeIndex)>> = graph
            .node_indices()
            .filter(|n| indegree[n.index()] == 0)
            .map(|n| Reverse((key(n), n)))
            .collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(Reverse((_, n))) = ready.pop() {
            if let Some(i) = graph[n] {
                order.push(i);
            }
            for next in graph.neighbors_directed(n, Direction::Outgoing) {
                indegree[next.index()] -= 1;
                if indegree[next.index()] == 0 {
                    ready.push(Reverse((key(next), next)));
                }
            }
        }
        let mut nodes: Vec<Option<Node>> = self.nodes.into_iter().map(Some).collect();
        Ok(order
            .into_iter()
            .filter_map(|i| nodes[i].take().map(|n| n.change))
            .collect())
    }
}

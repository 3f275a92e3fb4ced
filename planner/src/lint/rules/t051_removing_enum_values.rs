//! T051 removing-enum-values: dropping or re-creating a type removes values

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T051",
    name: "removing-enum-values",
    severity: Severity::Error,
    class: Class::Breaking,
    summary: r#"dropping or re-creating a type removes values"#,
    docs: r#"DROP TYPE fails while columns use the type, or with CASCADE drops those columns. Re-creating an enum with fewer labels (DROP TYPE then CREATE TYPE ... AS ENUM) removes values that rows and code still use. Enum values cannot be removed in place: migrate the columns to a new type (shadow migration) after the application stops writing the old values."#,
    bad: r#"DROP TYPE mood;
CREATE TYPE mood AS ENUM ('happy', 'sad');"#,
    good: r#"ALTER TYPE mood ADD VALUE IF NOT EXISTS 'neutral' AFTER 'happy';"#,
    remedy: Remedy::None,
    hazards: &[],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        match s.node {
            NodeEnum::DropStmt(d) if d.remove_type() == ObjectType::ObjectType => {
                for q in drop_objects(&d.objects) {
                    if s.opts.live.is_some_and(|l| {
                        !l.enums.contains_key(&q)
                            && !l.domains.contains_key(&q)
                            && !l.composites.contains_key(&q)
                    }) {
                        continue;
                    }
                    out.push(RuleHit::new(
                        format!("DROP TYPE {} removes the type and all its values: it fails while columns use it, or drops them with CASCADE", q.display_plain()),
                        "migrate the columns off the type first; to remove enum values, move the columns to a new type with a shadow migration",
                    ));
                }
            }
            NodeEnum::CreateEnumStmt(e) => {
                let q = qual_list(&e.type_name);
                let labels: Vec<String> = names(&e.vals);
                let live_missing: Vec<String> = s
                    .opts
                    .live
                    .and_then(|l| l.enums.get(&q))
                    .map(|en| {
                        en.labels
                            .iter()
                            .filter(|l| !labels.contains(l))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                if st.dropped_types.contains(&q) {
                    let extra = if live_missing.is_empty() {
                        String::new()
                    } else {
                        format!(" (removed: {})", live_missing.join(", "))
                    };
                    out.push(RuleHit::new(
                        format!("enum {} is re-created after being dropped{extra}: values rows and code still use are gone", q.display_plain()),
                        "add values with ALTER TYPE ... ADD VALUE instead; to remove values, migrate columns to a new type",
                    ));
                }
            }
            _ => {}
        }
    }
}

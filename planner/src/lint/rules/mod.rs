//! The rule registry: one rule per file, stable ids `T000`...`T063`, ordered by id.
//! Shared readers the rules use live in `prelude`.

mod t000_parse_error;
mod t001_require_concurrent_index_creation;
mod t002_require_concurrent_index_deletion;
mod t003_concurrently_in_transaction;
mod t004_require_concurrent_reindex;
mod t005_foreign_key_without_index;
mod t006_concurrent_index_on_pg14;
mod t007_constraint_missing_not_valid;
mod t008_adding_foreign_key_constraint;
mod t009_validate_in_same_transaction;
mod t010_disallowed_unique_constraint;
mod t011_adding_primary_key;
mod t012_primary_key_on_nullable_columns;
mod t013_ban_exclusion_constraint;
mod t014_ban_domain_constraint;
mod t015_setting_not_null;
mod t016_adding_field_with_default;
mod t017_adding_stored_generated_column;
mod t018_adding_serial_or_identity_column;
mod t019_changing_column_type;
mod t020_type_change_with_check_constraints;
mod t021_prefer_text_field;
mod t022_backfill_in_ddl_transaction;
mod t023_rewriting_table_storage;
mod t024_create_trigger_on_existing_table;
mod t025_require_concurrent_partition_detach;
mod t026_ban_cluster_vacuum_full;
mod t027_multiple_alter_table;
mod t028_statement_while_holding_access_exclusive;
mod t029_require_lock_timeout;
mod t030_require_statement_timeout;
mod t031_transaction_nesting;
mod t032_uncommitted_transaction;
mod t033_prefer_robust_stmts;
mod t034_dropping_constraint;
mod t035_ban_drop_not_null;
mod t036_adding_required_field;
mod t037_ban_drop_column;
mod t038_renaming_column;
mod t039_prefer_jsonb;
mod t040_ban_drop_table;
mod t041_renaming_table;
mod t042_ban_drop_schema_or_database;
mod t043_renaming_schema_or_enum_value;
mod t044_ban_cascade;
mod t045_ban_drop_sequence;
mod t046_enum_value_ordering;
mod t047_authorization_change;
mod t048_replication_or_extension_change;
mod t049_dropping_default;
mod t050_narrowing_column_type;
mod t051_removing_enum_values;
mod t052_changing_view_columns;
mod t053_type_change_breaks_prepared_statements;
mod t054_type_change_of_column_used_by_view;
mod t055_drop_and_add_column;
mod t056_prefer_bigint_over_int;
mod t057_prefer_identity;
mod t058_prefer_timestamptz;
mod t059_ban_char_field;
mod t060_identifier_too_long;
mod t061_ban_duplicate_column_assignments;
mod t062_unknown_table;
mod t063_uninspectable_sql;
mod t064_unknown_column;
mod t065_serial_sequence_not_widened;

use super::{Rule, RuleMeta};

static RULES: &[&dyn Rule] = &[
    &t000_parse_error::R,
    &t001_require_concurrent_index_creation::R,
    &t002_require_concurrent_index_deletion::R,
    &t003_concurrently_in_transaction::R,
    &t004_require_concurrent_reindex::R,
    &t005_foreign_key_without_index::R,
    &t006_concurrent_index_on_pg14::R,
    &t007_constraint_missing_not_valid::R,
    &t008_adding_foreign_key_constraint::R,
    &t009_validate_in_same_transaction::R,
    &t010_disallowed_unique_constraint::R,
    &t011_adding_primary_key::R,
    &t012_primary_key_on_nullable_columns::R,
    &t013_ban_exclusion_constraint::R,
    &t014_ban_domain_constraint::R,
    &t015_setting_not_null::R,
    &t016_adding_field_with_default::R,
    &t017_adding_stored_generated_column::R,
    &t018_adding_serial_or_identity_column::R,
    &t019_changing_column_type::R,
    &t020_type_change_with_check_constraints::R,
    &t021_prefer_text_field::R,
    &t022_backfill_in_ddl_transaction::R,
    &t023_rewriting_table_storage::R,
    &t024_create_trigger_on_existing_table::R,
    &t025_require_concurrent_partition_detach::R,
    &t026_ban_cluster_vacuum_full::R,
    &t027_multiple_alter_table::R,
    &t028_statement_while_holding_access_exclusive::R,
    &t029_require_lock_timeout::R,
    &t030_require_statement_timeout::R,
    &t031_transaction_nesting::R,
    &t032_uncommitted_transaction::R,
    &t033_prefer_robust_stmts::R,
    &t034_dropping_constraint::R,
    &t035_ban_drop_not_null::R,
    &t036_adding_required_field::R,
    &t037_ban_drop_column::R,
    &t038_renaming_column::R,
    &t039_prefer_jsonb::R,
    &t040_ban_drop_table::R,
    &t041_renaming_table::R,
    &t042_ban_drop_schema_or_database::R,
    &t043_renaming_schema_or_enum_value::R,
    &t044_ban_cascade::R,
    &t045_ban_drop_sequence::R,
    &t046_enum_value_ordering::R,
    &t047_authorization_change::R,
    &t048_replication_or_extension_change::R,
    &t049_dropping_default::R,
    &t050_narrowing_column_type::R,
    &t051_removing_enum_values::R,
    &t052_changing_view_columns::R,
    &t053_type_change_breaks_prepared_statements::R,
    &t054_type_change_of_column_used_by_view::R,
    &t055_drop_and_add_column::R,
    &t056_prefer_bigint_over_int::R,
    &t057_prefer_identity::R,
    &t058_prefer_timestamptz::R,
    &t059_ban_char_field::R,
    &t060_identifier_too_long::R,
    &t061_ban_duplicate_column_assignments::R,
    &t062_unknown_table::R,
    &t063_uninspectable_sql::R,
    &t064_unknown_column::R,
    &t065_serial_sequence_not_widened::R,
];

/// Every rule, ordered by id.
pub fn rules() -> &'static [&'static dyn Rule] {
    RULES
}

pub(crate) fn parse_error_meta() -> &'static RuleMeta {
    &t000_parse_error::META
}

pub(crate) fn uninspectable_meta() -> &'static RuleMeta {
    &t063_uninspectable_sql::META
}

/// What rule files import.
mod prelude {
    pub(crate) use pg_query::protobuf::{AlterTableType as A, ColumnDef, ConstrType, ObjectType};
    pub(crate) use pg_query::NodeEnum;

    pub(crate) use crate::finding::{Class, LockMode, Remedy, Severity};
    pub(crate) use crate::ident::QualName;
    pub(crate) use crate::lint::analyze::{
        add_column_rewrite, alter_table, cmd_column_def, cmd_constraint, cmds, column_constraints,
        drop_objects, names, qual, qual_list, type_change, AddColumnRewrite,
    };
    pub(crate) use crate::lint::state::FileState;
    pub(crate) use crate::lint::types::Ty;
    pub(crate) use crate::lint::{LintOptions, Rule, RuleHit, RuleMeta, Stmt};

    /// Columns declared by CREATE TABLE or ALTER TABLE ... ADD COLUMN, with their table.
    pub(crate) fn declared_columns(node: &NodeEnum) -> Vec<(QualName, &ColumnDef)> {
        let mut out = Vec::new();
        match node {
            NodeEnum::CreateStmt(c) => {
                if let Some(rv) = &c.relation {
                    let t = qual(rv);
                    for e in &c.table_elts {
                        if let Some(NodeEnum::ColumnDef(col)) = &e.node {
                            out.push((t.clone(), col.as_ref()));
                        }
                    }
                }
            }
            _ => {
                if let Some((t, a)) = alter_table(node) {
                    for (sub, cmd) in cmds(a) {
                        if sub == A::AtAddColumn {
                            if let Some(col) = cmd_column_def(cmd) {
                                out.push((t.clone(), col));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    pub(crate) fn col_type(col: &ColumnDef) -> Option<Ty> {
        col.type_name.as_ref().map(Ty::from_ast)
    }

    /// `table.column` for messages.
    pub(crate) fn tc(t: &QualName, c: &str) -> String {
        format!("{}.{}", t.display_plain(), c)
    }
}

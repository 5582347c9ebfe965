//! Statements Tally executes itself rather than through DataFusion: CREATE TABLE and DROP TABLE,
//! plus the clear refusals for what an append-only store does not do.

use datafusion::sql::sqlparser::ast::{
    self, ColumnOption, CreateTable, CreateTableOptions, Expr, ObjectName, ObjectType, SqlOption,
    Statement, Value,
};

use crate::catalog::{CATALOG_ENTRY_VERSION, ColumnDef, TableDef};
use crate::error::{Error, Result};
use crate::retention;
use crate::types::ColumnType;

/// What a DDL statement asks for.
pub(crate) enum Ddl {
    /// CREATE TABLE.
    CreateTable {
        /// The definition (id assigned at commit).
        def: TableDef,
        /// IF NOT EXISTS was given.
        if_not_exists: bool,
    },
    /// DROP TABLE of one or more tables.
    DropTables {
        /// Table names.
        names: Vec<String>,
        /// IF EXISTS was given.
        if_exists: bool,
        /// CASCADE was given: drop dependent views too.
        cascade: bool,
    },
    /// CREATE MATERIALIZED VIEW.
    CreateView {
        /// View name.
        name: String,
        /// The defining query.
        query: String,
        /// IF NOT EXISTS was given.
        if_not_exists: bool,
    },
    /// `ALTER TABLE t SET (retention = '…' | NULL)`.
    SetRetention {
        /// The table.
        table: String,
        /// The new period in seconds (`None`: keep rows forever).
        seconds: Option<u64>,
    },
    /// DROP MATERIALIZED VIEW of one or more views.
    DropViews {
        /// View names.
        names: Vec<String>,
        /// IF EXISTS was given.
        if_exists: bool,
    },
}

impl Ddl {
    /// The Postgres command tag.
    pub(crate) fn command(&self) -> &'static str {
        match self {
            Ddl::CreateTable { .. } => "CREATE TABLE",
            Ddl::DropTables { .. } => "DROP TABLE",
            Ddl::CreateView { .. } => "CREATE MATERIALIZED VIEW",
            Ddl::DropViews { .. } => "DROP MATERIALIZED VIEW",
            Ddl::SetRetention { .. } => "ALTER TABLE",
        }
    }
}

/// Recognizes statements Tally handles itself. `Ok(None)` means "let DataFusion plan it".
pub(crate) fn classify(statement: &Statement) -> Result<Option<Ddl>> {
    match statement {
        Statement::CreateTable(create) => create_table(create).map(Some),
        Statement::Drop {
            object_type: ObjectType::Table,
            if_exists,
            names,
            cascade,
            ..
        } => {
            let names = names.iter().map(object_name).collect::<Result<_>>()?;
            Ok(Some(Ddl::DropTables {
                names,
                if_exists: *if_exists,
                cascade: *cascade,
            }))
        }
        Statement::Drop {
            object_type: ObjectType::MaterializedView,
            if_exists,
            names,
            ..
        } => {
            let names = names.iter().map(object_name).collect::<Result<_>>()?;
            Ok(Some(Ddl::DropViews {
                names,
                if_exists: *if_exists,
            }))
        }
        Statement::CreateView(view) if view.materialized => {
            if view.or_replace || view.or_alter || !view.columns.is_empty() {
                return Err(Error::NotSupported(
                    "CREATE MATERIALIZED VIEW supports neither OR REPLACE nor a column list; name the columns with AS in the query".into(),
                ));
            }
            view_options(&view.options)?;
            Ok(Some(Ddl::CreateView {
                name: unreserved(object_name(&view.name)?)?,
                query: view.query.to_string(),
                if_not_exists: view.if_not_exists,
            }))
        }
        Statement::Drop { object_type, .. } => Err(Error::NotSupported(format!(
            "DROP {object_type} is not supported"
        ))),
        // DataFusion 55 plans no RETURNING: refuse it by name rather than with its planning
        // error, so a client sees 0A000 and what to do instead.
        Statement::Insert(insert) if insert.returning.is_some() => Err(Error::NotSupported(
            "INSERT … RETURNING is not supported: read the inserted rows back with a SELECT \
             (JDBC: prepare the statement without RETURN_GENERATED_KEYS)"
                .into(),
        )),
        Statement::Update(_) => Err(Error::NotSupported(
            "UPDATE is not supported: tables are append-only".into(),
        )),
        Statement::Delete(_) => Err(Error::NotSupported(
            "DELETE is not supported: tables are append-only".into(),
        )),
        Statement::Truncate(_) => Err(Error::NotSupported(
            "TRUNCATE is not supported: tables are append-only".into(),
        )),
        Statement::Merge(_) => Err(Error::NotSupported(
            "MERGE is not supported: tables are append-only".into(),
        )),
        Statement::AlterTable(alter) => alter_table(alter).map(Some),
        Statement::CreateView(_) => Err(Error::NotSupported(
            "CREATE VIEW is not supported: Tally has only materialized views \
             (CREATE MATERIALIZED VIEW … GROUP BY …); name a query with WITH … AS (…) instead"
                .into(),
        )),
        Statement::CreateSchema { .. } | Statement::CreateDatabase { .. } => {
            Err(Error::NotSupported(
                "Tally has one schema, \"public\": CREATE SCHEMA/DATABASE is not supported".into(),
            ))
        }
        Statement::CreateIndex(_) => Err(Error::NotSupported(
            "CREATE INDEX is not supported: use WITH (bloom_filter_columns = '…') on the table"
                .into(),
        )),
        _ => Ok(None),
    }
}

/// The unqualified, case-folded name of a table (`public.t` and `t` are the same table).
pub(crate) fn object_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(normalize)
                .ok_or_else(|| Error::Syntax(format!("invalid name {name}")))
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] if schema == "public" => Ok(table.clone()),
        [catalog, schema, table] if catalog == "tally" && schema == "public" => Ok(table.clone()),
        _ => Err(Error::NotSupported(format!(
            "{name}: tables live in schema \"public\""
        ))),
    }
}

/// Refuses names of system tables.
fn unreserved(name: String) -> Result<String> {
    if super::system::SYSTEM_TABLES.contains(&name.as_str()) {
        return Err(Error::InvalidDefinition(format!(
            "\"{name}\" is the name of a system table"
        )));
    }
    Ok(name)
}

/// Folds unquoted identifiers to lower case, as PostgreSQL does.
pub(crate) fn normalize(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn create_table(create: &CreateTable) -> Result<Ddl> {
    if create.query.is_some() {
        return Err(Error::NotSupported(
            "CREATE TABLE … AS SELECT is not supported; create the table, then INSERT … SELECT"
                .into(),
        ));
    }
    if create.external || create.temporary || create.or_replace {
        return Err(Error::NotSupported(
            "only plain CREATE TABLE is supported (no EXTERNAL, TEMPORARY or OR REPLACE)".into(),
        ));
    }
    let name = unreserved(object_name(&create.name)?)?;
    let mut columns = Vec::with_capacity(create.columns.len());
    for column in &create.columns {
        let mut nullable = true;
        for option in &column.options {
            match &option.option {
                ColumnOption::NotNull => nullable = false,
                ColumnOption::Null => nullable = true,
                ColumnOption::PrimaryKey(_) => return Err(constraint_refused("PRIMARY KEY")),
                ColumnOption::Unique(_) => return Err(constraint_refused("UNIQUE")),
                ColumnOption::ForeignKey(_) => return Err(constraint_refused("FOREIGN KEY")),
                ColumnOption::Check(_) => return Err(constraint_refused("CHECK")),
                other => {
                    return Err(Error::NotSupported(format!(
                        "column option {other} on \"{}\" is not supported (only NULL / NOT NULL)",
                        column.name
                    )));
                }
            }
        }
        columns.push(ColumnDef {
            name: normalize(&column.name),
            column_type: ColumnType::from_sql(&column.data_type)?,
            nullable,
        });
    }
    if let Some(constraint) = create.constraints.first() {
        return Err(constraint_refused(constraint_kind(constraint)));
    }
    let mut def = TableDef {
        v: CATALOG_ENTRY_VERSION,
        id: 0,
        name,
        columns,
        time_column: None,
        bloom_filter_columns: vec![],
        retention_seconds: None,
        rows_removed: false,
    };
    let options = match &create.table_options {
        CreateTableOptions::None => &[][..],
        CreateTableOptions::With(options) => options.as_slice(),
        _ => {
            return Err(Error::NotSupported(
                "table options must be given as WITH (key = 'value', …)".into(),
            ));
        }
    };
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(Error::NotSupported(format!(
                "table option {option} is not supported"
            )));
        };
        let text = option_text(value).ok_or_else(|| {
            Error::InvalidDefinition(format!(
                "option {key} needs a string value, like {key} = 'ts'"
            ))
        })?;
        match normalize(key).as_str() {
            "time_column" => def.time_column = Some(column_reference(&def, &text)),
            "retention" => def.retention_seconds = Some(retention::parse_period(&text)?),
            "bloom_filter_columns" => {
                def.bloom_filter_columns = text
                    .split(',')
                    .filter(|c| !c.trim().is_empty())
                    .map(|c| column_reference(&def, c))
                    .collect();
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unrecognized table parameter \"{other}\"; valid parameters are \
                     time_column, bloom_filter_columns and retention"
                )));
            }
        }
    }
    def.validate()?;
    Ok(Ddl::CreateTable {
        def,
        if_not_exists: create.if_not_exists,
    })
}

/// `ALTER TABLE t SET (retention = '7 days')`, or `= NULL` (or `'none'`) to keep rows forever:
/// the only ALTER TABLE Tally does.
/// Materialized views take no `WITH (…)` parameters yet: any given is refused by name (22023),
/// as PostgreSQL refuses an unrecognized storage parameter, rather than silently dropped.
fn view_options(options: &CreateTableOptions) -> Result<()> {
    let given: &[SqlOption] = match options {
        CreateTableOptions::None => return Ok(()),
        CreateTableOptions::With(options)
        | CreateTableOptions::Options(options)
        | CreateTableOptions::Plain(options)
        | CreateTableOptions::TableProperties(options) => options,
    };
    let Some(first) = given.first() else {
        return Ok(());
    };
    let name = match first {
        SqlOption::KeyValue { key, .. } => normalize(key),
        other => other.to_string(),
    };
    Err(Error::InvalidArgument(format!(
        "unrecognized materialized view parameter \"{name}\": CREATE MATERIALIZED VIEW accepts no \
         WITH (…) parameters"
    )))
}

fn alter_table(alter: &ast::AlterTable) -> Result<Ddl> {
    let refused = || {
        Error::NotSupported(
            "ALTER TABLE supports only SET (retention = '…'); tables cannot change their columns yet"
                .into(),
        )
    };
    if let Some(constraint) = alter.operations.iter().find_map(|op| match op {
        ast::AlterTableOperation::AddConstraint { constraint, .. } => Some(constraint),
        _ => None,
    }) {
        return Err(constraint_refused(constraint_kind(constraint)));
    }
    let [ast::AlterTableOperation::SetOptionsParens { options }] = alter.operations.as_slice()
    else {
        return Err(refused());
    };
    let [SqlOption::KeyValue { key, value }] = options.as_slice() else {
        return Err(refused());
    };
    if normalize(key) != "retention" {
        return Err(Error::InvalidArgument(format!(
            "unrecognized table parameter \"{}\" for ALTER TABLE … SET; the only valid one is retention",
            normalize(key)
        )));
    }
    let seconds = match value {
        Expr::Value(v) if matches!(v.value, Value::Null) => None,
        _ => {
            let text = option_text(value).ok_or_else(|| {
                Error::InvalidDefinition(
                    "retention needs a period, like retention = '30 days', or NULL".into(),
                )
            })?;
            if text.trim().eq_ignore_ascii_case("none") {
                None
            } else {
                Some(retention::parse_period(&text)?)
            }
        }
    };
    Ok(Ddl::SetRetention {
        table: object_name(&alter.name)?,
        seconds,
    })
}

/// The refusal of a key or check constraint, in CREATE TABLE or ALTER TABLE … ADD.
/// Tally neither enforces nor keeps them: accepting one would promise what no row is checked
/// against.
fn constraint_refused(kind: &str) -> Error {
    Error::NotSupported(format!(
        "{kind} constraints are not supported: Tally neither enforces nor stores keys and \
         checks; leave the constraint out (NOT NULL is enforced)"
    ))
}

fn constraint_kind(constraint: &ast::TableConstraint) -> &'static str {
    match constraint {
        ast::TableConstraint::PrimaryKey(_) => "PRIMARY KEY",
        ast::TableConstraint::Unique(_) => "UNIQUE",
        ast::TableConstraint::ForeignKey(_) => "FOREIGN KEY",
        ast::TableConstraint::Check(_) => "CHECK",
        _ => "table",
    }
}

/// A column named inside an option string: exact match first, then case-folded.
fn column_reference(def: &TableDef, text: &str) -> String {
    let text = text.trim();
    if def.column_index(text).is_some() {
        text.to_string()
    } else {
        text.to_lowercase()
    }
}

fn option_text(value: &Expr) -> Option<String> {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        Expr::Identifier(ident) => Some(ident.value.clone()),
        _ => None,
    }
}

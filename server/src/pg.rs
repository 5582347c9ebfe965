//! The Postgres wire protocol over the engine (pgwire): one set of handlers per connection, so
//! session settings and an in-progress COPY belong to their connection and die with it.
//!
//! - [`auth`] authenticates connections at startup;
//! - [`statement`] splits query strings and decides who answers each statement;
//! - [`types`] maps Arrow types to Postgres OIDs and encodes values (text and binary);
//! - [`copy`] decodes COPY input incrementally and encodes COPY output;
//! - [`errors`] is the single place where errors get their SQLSTATE;
//! - [`transaction`] keeps a connection's transaction block (held writes, savepoints);
//! - [`catalog`] emulates `pg_catalog` for psql's meta-commands and other tools.

pub mod auth;
pub mod catalog;
pub mod connection;
pub mod copy;
pub mod errors;
pub mod refuse;
pub mod sessions;
pub mod settings;
pub mod statement;
pub mod subscribe;
pub mod transaction;
pub mod types;

use std::collections::VecDeque;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::{self, Either};
use futures::stream::BoxStream;
use futures::{Sink, SinkExt, Stream, StreamExt, stream};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::copy::{CopyHandler, send_copy_both_response, send_copy_in_response};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_execution_response, send_ready_for_query,
};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, PgWireConnectionState,
    PgWireServerHandlers, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{DataRow, NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Describe, Execute, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use tally_engine::reexports::arrow::array::RecordBatch;
use tally_engine::reexports::datafusion::common::ScalarValue;
use tally_engine::{Database, Prepared, StatementResult, StreamedResult};
use tokio::time::Instant;

use crate::metrics::{Direction, ServerMetrics};

use auth::Startup;
use errors::state;
use settings::{REPORTED, SETTINGS, Session, check_setting, display_name, show_fields};
use statement::Statement;

pub use settings::{SERVER_VERSION, SERVER_VERSION_NUM, default_setting};

/// State shared by every connection of one server.
pub struct Shared {
    db: Database,
    cancel: Arc<DefaultCancelHandler>,
    startup: Arc<Startup>,
    sessions: Arc<sessions::Sessions>,
    metrics: Arc<ServerMetrics>,
}

impl Shared {
    /// Shared state over an open database; connections authenticate as `login` says and are
    /// listed in `sessions` (the registry behind `tally_sessions`).
    pub fn new(db: Database, login: auth::Login, sessions: Arc<sessions::Sessions>) -> Shared {
        let manager = Arc::new(ConnectionManager::new());
        Shared {
            sessions,
            metrics: Arc::new(ServerMetrics::new(db.clone())),
            db,
            cancel: Arc::new(DefaultCancelHandler::new(Arc::clone(&manager))),
            startup: Arc::new(Startup::new(login, manager)),
        }
    }

    /// What the server counts (sessions, statements, COPY rows), rendered with the engine's
    /// metrics by the metrics endpoint.
    pub fn metrics(&self) -> &Arc<ServerMetrics> {
        &self.metrics
    }
}

/// The handlers of one connection.
pub struct ConnectionHandlers {
    conn: Arc<Connection>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl ConnectionHandlers {
    /// Handlers for a new connection.
    pub fn new(shared: Arc<Shared>) -> ConnectionHandlers {
        let blocks = Arc::new(tokio::sync::Mutex::new(transaction::Blocks::default()));
        ConnectionHandlers {
            conn: Arc::new(Connection {
                db: shared.db.clone(),
                parser: Arc::new(Parser {
                    db: shared.db.clone(),
                    blocks: Arc::clone(&blocks),
                }),
                session: Mutex::new(Session::default()),
                copy: tokio::sync::Mutex::new(None),
                copy_out_rows: Mutex::new(VecDeque::new()),
                blocks,
                registration: shared.sessions.register(),
                metrics: Arc::clone(&shared.metrics),
            }),
            cancel: Arc::clone(&shared.cancel),
            startup: Arc::clone(&shared.startup),
        }
    }
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.conn)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.conn)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::clone(&self.conn)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// One client connection: the simple, extended and copy handlers.
pub struct Connection {
    db: Database,
    parser: Arc<Parser>,
    session: Mutex<Session>,
    copy: tokio::sync::Mutex<Option<copy::CopyIn>>,
    /// The row counts of the `COPY … TO STDOUT` answers made and not yet sent, in order
    /// ([`copy::send_out`] tags each with its count).
    copy_out_rows: Mutex<VecDeque<u64>>,
    /// The open transaction block, if any.
    blocks: Arc<tokio::sync::Mutex<transaction::Blocks>>,
    /// This session in `tally_sessions`.
    registration: sessions::Registration,
    metrics: Arc<ServerMetrics>,
}

/// A statement parsed for the extended protocol.
#[derive(Debug, Clone)]
pub struct Parsed {
    statement: Statement,
    prepared: Option<Arc<Prepared>>,
    /// Parameters the client's SQL names (`$n`): more than the plan's when a rewrite removed
    /// some (a pruned catalog join); those are accepted and unused.
    declared_params: usize,
    /// The statement as the client sent it (for `tally_sessions`).
    sql: String,
}

/// The extended protocol's parser: plans engine statements with `Database::prepare`, which
/// gives parameter types and the result schema for Describe.
pub struct Parser {
    db: Database,
    /// The connection's transaction block (some COPY options are refused inside one).
    blocks: Arc<tokio::sync::Mutex<transaction::Blocks>>,
}

impl Parser {
    /// Classifies and prepares the one statement of an extended-protocol Parse.
    async fn parse_pieces(&self, mut pieces: Vec<String>) -> PgWireResult<Option<Parsed>> {
        if pieces.len() > 1 {
            return Err(errors::pg(
                state::SYNTAX,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(piece) = pieces.pop() else {
            return Ok(None);
        };
        let statement = statement::classify(&piece)?;
        let prepared = match &statement {
            Statement::Engine(sql) => Some(Arc::new(
                self.db.prepare(sql).await.map_err(|e| errors::engine(&e))?,
            )),
            Statement::CopyIn(copy) => {
                // Fail at Parse, as drivers expect: once a driver has sent Execute for a COPY
                // it is already streaming CopyData.
                let schema = self
                    .db
                    .table_schema(&copy.table)
                    .map_err(|e| errors::engine(&e))?;
                copy::Decoder::new(&copy.table, &schema, &copy.columns, copy.format.clone())
                    .map_err(PgWireError::UserError)?;
                if copy.batch_id.is_some() && self.blocks.lock().await.active().is_some() {
                    return Err(batch_id_in_transaction_block());
                }
                None
            }
            _ => None,
        };
        Ok(Some(Parsed {
            statement,
            prepared,
            declared_params: statement::placeholders(&piece),
            sql: piece,
        }))
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Parsed;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Parsed>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let split = statement::split(sql)?;
        tally_engine::depth::on_big_stack(split.depth, self.parse_pieces(split.pieces)).await
    }

    fn get_parameter_types(&self, stmt: &Parsed) -> PgWireResult<Vec<Type>> {
        let mut types: Vec<Type> = stmt
            .prepared
            .as_ref()
            .map(|p| {
                p.param_types
                    .iter()
                    .map(|t| t.as_ref().map(types::pg_type).unwrap_or(Type::TEXT))
                    .collect()
            })
            .unwrap_or_default();
        if stmt.prepared.is_some() && types.len() < stmt.declared_params {
            types.resize(stmt.declared_params, Type::TEXT);
        }
        Ok(types)
    }

    fn get_result_schema(
        &self,
        stmt: &Parsed,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let binary = |i: usize| column_format.is_some_and(|f| f.is_binary(i));
        Ok(match (&stmt.statement, &stmt.prepared) {
            (Statement::Engine(_), Some(p)) => types::fields(&p.schema, binary),
            (Statement::Show(name), _) => show_fields(name, binary(0)),
            _ => vec![],
        })
    }
}

impl Connection {
    /// Records who the client is in `tally_sessions` (once).
    fn identify<C: ClientInfo>(&self, client: &C) {
        self.registration.activity().identify(|| {
            let metadata = client.metadata();
            sessions::Client {
                user: metadata.get("user").cloned(),
                database: metadata.get("database").cloned(),
                application_name: metadata.get("application_name").cloned(),
                address: Some(client.socket_addr().to_string()),
            }
        });
    }

    /// The session waits for its next statement (`tally_sessions.state`).
    async fn idle(&self) {
        let blocks = self.blocks.lock().await;
        let in_block = blocks.active().is_some();
        let failed = blocks.failed();
        drop(blocks);
        self.registration.activity().idle(in_block, failed);
    }

    fn timeout(&self) -> Option<Duration> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .statement_timeout
    }

    /// Runs `fut` under the session's statement_timeout and its engine settings
    /// (`tally.view_rewrite`).
    async fn timed<T>(&self, fut: impl Future<Output = T>) -> PgWireResult<T> {
        let settings = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .engine_settings();
        let fut = settings.scope(fut);
        match self.timeout() {
            Some(limit) => tokio::time::timeout(limit, fut)
                .await
                .map_err(|_| statement_timeout()),
            None => Ok(fut.await),
        }
    }

    /// When a statement starting now reaches the session's statement_timeout.
    fn deadline(&self) -> Option<Instant> {
        self.timeout().map(|limit| Instant::now() + limit)
    }

    /// Runs `answer` for a statement under the transaction block's rules: a failed block
    /// refuses everything but ending it, and an error aborts an open block.
    async fn guarded(
        &self,
        statement: &Statement,
        answer: impl Future<Output = PgWireResult<Response>>,
    ) -> PgWireResult<Response> {
        let ends_block = matches!(
            statement,
            Statement::Commit | Statement::Rollback | Statement::RollbackTo(_)
        );
        let query = self.metrics.start_query(statement);
        if !ends_block && self.blocks.lock().await.failed() {
            return query.finish(Err(transaction::Blocks::refused()));
        }
        let result = answer.await;
        if result.is_err() {
            self.blocks.lock().await.statement_failed();
        }
        query.finish(result)
    }

    /// Answers a statement that is not for the engine, or runs an engine statement without
    /// parameters, under the transaction block's rules.
    /// With `stream`, a query's rows are read as the client takes them (see [`to_response`]);
    /// without, they are all read before this returns (a statement followed by others in one
    /// query string, which must not run before it has succeeded).
    async fn run<C>(
        &self,
        client: &mut C,
        statement: &Statement,
        binary: &(dyn Fn(usize) -> bool + Sync),
        stream: bool,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.guarded(statement, self.answer(client, statement, binary, stream))
            .await
    }

    /// Answers a transaction-control statement, sending its warning first.
    async fn transaction_control<C>(
        &self,
        client: &mut C,
        statement: &Statement,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut blocks = self.blocks.lock().await;
        let answer = match statement {
            Statement::Begin(tag) => blocks.begin(&self.db, tag),
            Statement::Commit => {
                let (tx, answer) = blocks.take_for_commit();
                drop(blocks);
                if let Some(tx) = tx {
                    tx.commit().await.map_err(|e| errors::engine(&e))?;
                }
                answer
            }
            Statement::Rollback => blocks.rollback(),
            Statement::Savepoint(name) => blocks.savepoint(name)?,
            Statement::Release(name) => blocks.release(name)?,
            Statement::RollbackTo(name) => blocks.rollback_to(name)?,
            _ => return Err(errors::pg(state::INTERNAL, "not a transaction statement")),
        };
        if let Some(warning) = answer.warning {
            client
                .send(PgWireBackendMessage::NoticeResponse(warning.into()))
                .await?;
        }
        let tag = Tag::new(answer.tag);
        Ok(match statement {
            Statement::Begin(_) => Response::TransactionStart(tag),
            Statement::Commit | Statement::Rollback => Response::TransactionEnd(tag),
            _ => Response::Execution(tag),
        })
    }

    async fn answer<C>(
        &self,
        client: &mut C,
        statement: &Statement,
        binary: &(dyn Fn(usize) -> bool + Sync),
        stream: bool,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match statement {
            Statement::Engine(sql) => {
                let deadline = self.deadline();
                let blocks = self.blocks.lock().await;
                let result = match (blocks.active(), stream) {
                    (Some(tx), true) => self.timed(Box::pin(tx.execute_streaming(sql))).await?,
                    (None, true) => self.timed(Box::pin(self.db.execute_streaming(sql))).await?,
                    (Some(tx), false) => self
                        .timed(tx.execute(sql))
                        .await?
                        .map(|mut r| r.pop().map(StreamedResult::Done)),
                    (None, false) => self
                        .timed(self.db.execute(sql))
                        .await?
                        .map(|mut r| r.pop().map(StreamedResult::Done)),
                };
                let result = result.map_err(|e| errors::engine(&e))?;
                drop(blocks);
                let notices = match &result {
                    Some(StreamedResult::Done(result)) => result.notices.as_slice(),
                    _ => &[],
                };
                for notice in notices {
                    let notice = pgwire::error::ErrorInfo::new(
                        "NOTICE".into(),
                        "00000".into(),
                        notice.clone(),
                    );
                    client
                        .send(PgWireBackendMessage::NoticeResponse(notice.into()))
                        .await?;
                }
                match result {
                    Some(result) => to_response(result, binary, deadline),
                    None => Ok(Response::EmptyQuery),
                }
            }
            Statement::Begin(_)
            | Statement::Commit
            | Statement::Rollback
            | Statement::Savepoint(_)
            | Statement::Release(_)
            | Statement::RollbackTo(_) => self.transaction_control(client, statement).await,
            Statement::Noop(tag) => Ok(Response::Execution(Tag::new(tag))),
            Statement::Index {
                tag,
                table,
                columns,
            } => {
                if let Some(table) = table {
                    let schema = self
                        .db
                        .table_schema(table)
                        .map_err(|e| errors::engine(&e))?;
                    if let Some(missing) =
                        columns.iter().find(|c| schema.field_with_name(c).is_err())
                    {
                        return Err(errors::pg(
                            state::UNDEFINED_COLUMN,
                            format!("column \"{missing}\" does not exist"),
                        ));
                    }
                }
                let notice = pgwire::error::ErrorInfo::new(
                    "NOTICE".into(),
                    "00000".into(),
                    format!(
                        "{tag} changes nothing: Tally keeps no secondary indexes (tables are \
                         pruned by time and by WITH (bloom_filter_columns = …))"
                    ),
                );
                client
                    .send(PgWireBackendMessage::NoticeResponse(notice.into()))
                    .await?;
                Ok(Response::Execution(Tag::new(tag)))
            }
            Statement::Set { name, value } => {
                let reported = {
                    let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
                    match value {
                        Some(value) => {
                            let (value, timeout) = check_setting(name, value)?;
                            if let Some(timeout) = timeout {
                                session.statement_timeout = timeout;
                            }
                            session.changed.insert(name.clone(), value);
                        }
                        None => {
                            session.changed.remove(name);
                            if name == "statement_timeout" {
                                session.statement_timeout = None;
                            }
                        }
                    }
                    session.get(name)
                };
                if name == "application_name" {
                    self.registration
                        .activity()
                        .set_application_name(reported.clone());
                }
                if REPORTED.contains(&name.as_str())
                    && let Some(value) = reported
                {
                    client
                        .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                            display_name(name),
                            value,
                        )))
                        .await?;
                }
                Ok(Response::Execution(Tag::new(if value.is_some() {
                    "SET"
                } else {
                    "RESET"
                })))
            }
            Statement::ResetAll => {
                let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
                *session = Session::default();
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Statement::Show(name) => self.show(name, binary(0)),
            Statement::CopyIn(copy) => {
                let mut bulk = self
                    .db
                    .bulk_ingest(&copy.table)
                    .map_err(|e| errors::engine(&e))?;
                if let Some(id) = &copy.batch_id {
                    if self.blocks.lock().await.active().is_some() {
                        return Err(batch_id_in_transaction_block());
                    }
                    bulk.batch_id(id.as_str()).map_err(|e| errors::engine(&e))?;
                }
                let decoder = copy::Decoder::new(
                    &copy.table,
                    &bulk.schema(),
                    &copy.columns,
                    copy.format.clone(),
                )
                .map_err(PgWireError::UserError)?;
                let columns = decoder.columns();
                *self.copy.lock().await = Some(copy::CopyIn::start(bulk, decoder));
                Ok(Response::CopyIn(CopyResponse::new(
                    copy.format.wire_code(),
                    columns,
                    stream::empty(),
                )))
            }
            Statement::CopyFromParquet { table, path } => {
                let path = server_file(&self.db, path)?;
                let bulk = self
                    .timed(self.db.read_parquet(table, &path))
                    .await?
                    .map_err(|e| errors::engine(&e))?;
                // In a transaction block the load is held (its files unregistered) until COMMIT.
                let blocks = self.blocks.lock().await;
                let rows = match blocks.active() {
                    Some(tx) => tx.hold_bulk(bulk),
                    None => bulk.commit().await.map_err(|e| errors::engine(&e))?,
                };
                self.metrics.copy_rows(Direction::In, rows);
                Ok(Response::Execution(
                    Tag::new("COPY").with_rows(rows as usize),
                ))
            }
            Statement::CopyToParquet { query, path } => {
                let path = server_file(&self.db, path)?;
                let rows = self
                    .timed(self.db.copy_to_parquet(query, &path))
                    .await?
                    .map_err(|e| errors::engine(&e))?;
                self.metrics.copy_rows(Direction::Out, rows);
                Ok(Response::Execution(
                    Tag::new("COPY").with_rows(rows as usize),
                ))
            }
            // Streams until the client leaves, cancels, or the view goes: never an Ok answer.
            Statement::Subscribe(request) => {
                Err(subscribe::stream(client, &self.db, request, &self.metrics).await)
            }
            Statement::CopyOut(copy) => {
                let blocks = self.blocks.lock().await;
                let results = match blocks.active() {
                    Some(tx) => self.timed(tx.execute(&copy.query)).await?,
                    None => self.timed(self.db.execute(&copy.query)).await?,
                };
                drop(blocks);
                let mut results = results.map_err(|e| errors::engine(&e))?;
                let result = results
                    .pop()
                    .ok_or_else(|| errors::pg(state::SYNTAX, "COPY needs a query"))?;
                let lines = copy::encode_rows(&result.batches, &result.schema, &copy.format)?;
                self.metrics.copy_rows(Direction::Out, result.rows);
                self.copy_out_rows
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_back(result.rows);
                let data = lines
                    .into_iter()
                    .map(|line| Ok(CopyData::new(Bytes::from(line))));
                // Made as text, then marked binary: `CopyResponse::new(1, …)` appends a trailer
                // of its own, while the encoder ends with the trailer already (in the header's
                // message when there are no rows, as PostgreSQL sends it).
                let mut response =
                    CopyResponse::new(0, result.schema.fields().len(), stream::iter(data));
                response.format = copy.format.wire_code();
                Ok(Response::CopyOut(response))
            }
        }
    }

    fn show(&self, name: &str, binary: bool) -> PgWireResult<Response> {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let fields = Arc::new(show_fields(name, binary));
        let rows: Vec<Vec<String>> = if name == "all" {
            let mut names: Vec<String> = SETTINGS.iter().map(|(n, _, _)| n.to_string()).collect();
            names.extend(session.changed.keys().cloned());
            names.sort();
            names.dedup();
            names
                .into_iter()
                .map(|n| {
                    let v = session.get(&n).unwrap_or_default();
                    vec![display_name(&n), v]
                })
                .collect()
        } else {
            let value = session.get(name).ok_or_else(|| {
                errors::pg(
                    state::UNDEFINED_OBJECT,
                    format!("unrecognized configuration parameter \"{name}\""),
                )
            })?;
            vec![vec![value]]
        };
        let mut data = Vec::new();
        for row in rows {
            let mut encoder = pgwire::api::results::DataRowEncoder::new(Arc::clone(&fields));
            for value in row {
                encoder.encode_field(&value)?;
            }
            data.push(Ok(encoder.take_row()));
        }
        let mut response = QueryResponse::new(fields, stream::iter(data));
        response.set_command_tag("SHOW");
        Ok(Response::Query(response))
    }
}

/// The file a server-side COPY names: an absolute path as is, a relative one under the data
/// directory (as PostgreSQL resolves them against its own); `..` is refused so a relative path
/// cannot leave it.
fn server_file(db: &Database, path: &str) -> PgWireResult<std::path::PathBuf> {
    let given = std::path::Path::new(path);
    if given
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(errors::pg(
            "42501",
            format!("COPY file path \"{path}\" must not contain \"..\""),
        ));
    }
    Ok(if given.is_absolute() {
        given.to_path_buf()
    } else {
        db.path().join(given)
    })
}

/// A statement's result as a protocol response. The rows are encoded one batch at a time as
/// pgwire sends them, and a streamed query's batches are read from the engine only then, so
/// the first rows leave while the plan still runs and at most a few batches are in memory;
/// the `SELECT n` tag is pgwire's count of the rows it sent. An error while reading (past
/// `deadline`, the statement_timeout, too) is the stream's last item, which the senders
/// ([`send_rows`], pgwire's portal) turn into an ErrorResponse.
fn to_response(
    result: StreamedResult,
    binary: &(dyn Fn(usize) -> bool + Sync),
    deadline: Option<Instant>,
) -> PgWireResult<Response> {
    let (command, schema, batches) = match result {
        StreamedResult::Rows(rows) => {
            let schema = rows.schema();
            let batches = rows.map(|batch| batch.map_err(|e| errors::engine(&e)));
            ("SELECT".to_string(), schema, batches.boxed())
        }
        StreamedResult::Done(StatementResult {
            command,
            schema,
            batches,
            rows,
            ..
        }) => {
            if command == "INSERT" {
                return Ok(Response::Execution(
                    Tag::new("INSERT").with_oid(0).with_rows(rows as usize),
                ));
            }
            (
                command,
                schema,
                stream::iter(batches.into_iter().map(Ok)).boxed(),
            )
        }
    };
    if schema.fields().is_empty() {
        return Ok(Response::Execution(Tag::new(&command)));
    }
    let fields = Arc::new(types::fields(&schema, binary));
    let rows = data_rows(batches, Arc::clone(&fields), deadline);
    let mut response = QueryResponse::new(fields, rows);
    if command != "SELECT" {
        response.set_command_tag(&command);
    }
    Ok(Response::Query(response))
}

/// `batches` as DataRows, encoded [`ENCODE_ROWS`] at a time as rows are pulled. Past
/// `deadline` waiting for a batch gives the statement_timeout error. No batch is read after
/// an error (the reader stops at the first one).
fn data_rows(
    batches: BoxStream<'static, PgWireResult<RecordBatch>>,
    fields: Arc<Vec<FieldInfo>>,
    deadline: Option<Instant>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    stream::unfold(Some(batches), move |batches| {
        async move {
            let mut batches = batches?;
            let next = match deadline {
                // Checked before each batch too: a plan that always has its next batch ready
                // would never let the timer fire.
                Some(at) if Instant::now() >= at => {
                    return Some((Err(statement_timeout()), None));
                }
                Some(at) => match tokio::time::timeout_at(at, batches.next()).await {
                    Ok(next) => next,
                    Err(_) => return Some((Err(statement_timeout()), None)),
                },
                None => batches.next().await,
            }?;
            match next {
                Ok(batch) => Some((Ok(batch), Some(batches))),
                Err(e) => Some((Err(e), None)),
            }
        }
    })
    // Large batches are encoded a slice at a time, so that the first rows leave while the
    // rest are still being encoded.
    .flat_map(|batch| match batch {
        Ok(batch) => stream::iter(slices(batch, ENCODE_ROWS).map(Ok)).left_stream(),
        Err(e) => stream::once(future::ready(Err(e))).right_stream(),
    })
    .map(move |slice| slice.and_then(|batch| types::encode_batch(&batch, &fields)))
    .flat_map(|rows| match rows {
        Ok(rows) => stream::iter(rows).map(Ok).left_stream(),
        Err(e) => stream::once(future::ready(Err(e))).right_stream(),
    })
}

/// Rows encoded at a time: small enough that a large result starts leaving early, large
/// enough that the per-slice overhead does not show.
const ENCODE_ROWS: usize = 4096;

/// `batch` cut into zero-copy slices of at most `rows` rows.
fn slices(batch: RecordBatch, rows: usize) -> impl Iterator<Item = RecordBatch> {
    let total = batch.num_rows();
    (0..total.div_ceil(rows).max(1)).map(move |i| {
        let offset = i * rows;
        batch.slice(offset, rows.min(total - offset))
    })
}

/// The error of a statement that ran past the session's statement_timeout.
fn statement_timeout() -> PgWireError {
    errors::pg(
        state::QUERY_CANCELED,
        "canceling statement due to statement timeout",
    )
}

/// Sends a query response: its RowDescription (with `describe`), DataRows and CommandComplete
/// with the rows sent. A row that fails ends the response: its error is returned (nothing
/// more is sent for it) for the caller to report. `Err` only if the client cannot be written.
async fn send_rows<C>(
    client: &mut C,
    mut response: QueryResponse,
    describe: bool,
) -> PgWireResult<Option<PgWireError>>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if describe {
        let fields = response.row_schema();
        let description = RowDescription::new(fields.iter().map(Into::into).collect());
        client
            .feed(PgWireBackendMessage::RowDescription(description))
            .await?;
    }
    let mut rows = 0;
    while let Some(row) = response.data_rows().next().await {
        match row {
            Ok(row) => {
                // `feed` flushes whenever the connection's buffer fills: rows leave as they
                // are encoded, and a client that reads slowly holds the query back.
                client.feed(PgWireBackendMessage::DataRow(row)).await?;
                rows += 1;
            }
            Err(e) => return Ok(Some(e)),
        }
    }
    // PostgreSQL's SHOW completes as `SHOW`, without a row count.
    let tag = match response.command_tag() {
        "SHOW" => Tag::new("SHOW"),
        command => Tag::new(command).with_rows(rows),
    };
    client
        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
        .await?;
    Ok(None)
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    /// pgwire's simple-query cycle, except that the ReadyForQuery status is the connection's
    /// transaction block (pgwire alone cannot see `ROLLBACK TO SAVEPOINT` recover a failed
    /// block, or a failed COMMIT end one).
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        self.identify(client);
        client.set_state(PgWireConnectionState::QueryInProgress);
        if query.query.chars().all(|c| c == ';' || c.is_whitespace()) {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        } else {
            let cancel = match client.session_extensions().get::<Arc<ConnectionHandle>>() {
                Some(handle) => Some(handle.start_query().await),
                None => None,
            };
            // The cancel request covers the statements and the sending of their rows (a
            // streamed query runs while its rows are sent).
            let (responses, mut cancel) = match cancel {
                Some(cancel) => {
                    match future::select(
                        Box::pin(SimpleQueryHandler::do_query(self, client, &query.query)),
                        cancel,
                    )
                    .await
                    {
                        Either::Left((result, cancel)) => (result, Some(cancel)),
                        Either::Right(_) => (Err(PgWireError::QueryCanceled), None),
                    }
                }
                None => (
                    SimpleQueryHandler::do_query(self, client, &query.query).await,
                    None,
                ),
            };
            let responses = match responses {
                Ok(responses) => responses,
                Err(e) => {
                    self.blocks.lock().await.statement_failed();
                    self.idle().await;
                    return Err(e);
                }
            };
            for response in responses {
                match response {
                    Response::EmptyQuery => {
                        client
                            .feed(PgWireBackendMessage::EmptyQueryResponse(
                                EmptyQueryResponse::new(),
                            ))
                            .await?;
                    }
                    Response::Query(results) => {
                        let failed = match cancel.as_mut() {
                            Some(cancel) => {
                                match future::select(
                                    Box::pin(send_rows(client, results, true)),
                                    cancel,
                                )
                                .await
                                {
                                    Either::Left((sent, _)) => sent?,
                                    Either::Right(_) => Some(PgWireError::QueryCanceled),
                                }
                            }
                            None => send_rows(client, results, true).await?,
                        };
                        // A query that fails mid-stream ends the query string, as an error
                        // before its first row would have.
                        if let Some(e) = failed {
                            self.blocks.lock().await.statement_failed();
                            client
                                .feed(PgWireBackendMessage::ErrorResponse(
                                    pgwire::error::ErrorInfo::from(e).into(),
                                ))
                                .await?;
                            break;
                        }
                    }
                    Response::Execution(tag)
                    | Response::TransactionStart(tag)
                    | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
                    Response::Error(e) => {
                        self.blocks.lock().await.statement_failed();
                        client
                            .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                            .await?;
                    }
                    Response::CopyIn(copy) => {
                        send_copy_in_response(client, copy).await?;
                        client.set_state(PgWireConnectionState::CopyInProgress(false));
                    }
                    Response::CopyOut(copy) => self.send_copy_out(client, copy).await?,
                    Response::CopyBoth(copy) => {
                        send_copy_both_response(client, copy).await?;
                        client.set_state(PgWireConnectionState::CopyInProgress(false));
                    }
                }
            }
        }
        // During COPY FROM STDIN the copy handler sends ReadyForQuery at its end.
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            self.idle().await;
            client.set_state(PgWireConnectionState::ReadyForQuery);
            let status = self.blocks.lock().await.status();
            client.set_transaction_status(status);
            send_ready_for_query(client, status).await?;
        }
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.forget_copy_out_rows();
        let split = match statement::split(query) {
            Ok(split) => split,
            Err(e) => return Ok(vec![Response::Error(Box::new(e.into()))]),
        };
        tally_engine::depth::on_big_stack(split.depth, self.answer_pieces(client, split.pieces))
            .await
    }
}

impl Connection {
    /// Answers the statements of a simple-protocol query string, one after another, until one
    /// fails or starts a COPY FROM STDIN.
    async fn answer_pieces<C>(
        &self,
        client: &mut C,
        pieces: Vec<String>,
    ) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut responses = Vec::new();
        let last = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.into_iter().enumerate() {
            self.registration.activity().start(&piece);
            let outcome = match statement::classify(&piece) {
                Ok(statement) => {
                    self.run(client, &statement, &|_: usize| false, i == last)
                        .await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(response) => {
                    let copy = matches!(response, Response::CopyIn(_));
                    responses.push(response);
                    if copy {
                        break;
                    }
                }
                Err(e) => {
                    responses.push(Response::Error(Box::new(e.into())));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Parsed;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    /// pgwire's Describe, except that a statement or portal without result rows (INSERT,
    /// DDL, SET, COPY …) answers NoData, as PostgreSQL does: pgwire sends an empty
    /// RowDescription for a statement that has parameters, which JDBC takes for a result
    /// ("A result was returned when none was expected").
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        let store = client.portal_store();
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                let Some(Entry::Value(stmt)) = store.get_statement(name) else {
                    return self._on_describe(client, message).await;
                };
                let described = self.do_describe_statement(client, &stmt).await?;
                let parameters = described.parameters.iter().map(|t| t.oid()).collect();
                client
                    .feed(PgWireBackendMessage::ParameterDescription(
                        ParameterDescription::new(parameters),
                    ))
                    .await?;
                send_row_description(client, &stmt.statement, &described.fields).await
            }
            TARGET_TYPE_BYTE_PORTAL => {
                let Some(Entry::Value(portal)) = store.get_portal(name) else {
                    return self._on_describe(client, message).await;
                };
                let described = self.do_describe_portal(client, &portal).await?;
                send_row_description(client, &portal.statement.statement, &described.fields).await
            }
            _ => self._on_describe(client, message).await,
        }
    }

    /// pgwire's Execute, then the transaction status set from the connection's block (the
    /// status goes out with the ReadyForQuery that answers Sync).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.identify(client);
        let portal_name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(portal_name) {
            Some(Entry::Value(portal)) => Some(portal),
            _ => None,
        };
        if let Some(portal) = &portal {
            self.registration
                .activity()
                .start(&portal.statement.statement.sql);
        }
        let result = match portal {
            Some(portal) if takes_over(&portal, message.max_rows).await => {
                if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
                    self.execute_whole(client, &portal).await
                } else {
                    Err(PgWireError::NotReadyForQuery)
                }
            }
            _ => self._on_execute(client, message).await,
        };
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            {
                let mut blocks = self.blocks.lock().await;
                if result.is_err() {
                    blocks.statement_failed();
                }
                client.set_transaction_status(blocks.status());
            }
            self.idle().await;
        }
        result
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Parsed>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parsed = &portal.statement.statement;
        let formats = portal.result_column_format.clone();
        let binary = move |i: usize| formats.is_binary(i);
        match (&parsed.statement, &parsed.prepared) {
            (Statement::Engine(_), Some(prepared)) => {
                let run = async {
                    let params = bind_parameters(portal, prepared)?;
                    let deadline = self.deadline();
                    let blocks = self.blocks.lock().await;
                    let result = match blocks.active() {
                        Some(tx) => {
                            let run = Box::pin(tx.execute_prepared_streaming(prepared, params));
                            self.timed(run).await?
                        }
                        None => {
                            let run =
                                Box::pin(self.db.execute_prepared_streaming(prepared, params));
                            self.timed(run).await?
                        }
                    };
                    let result = result.map_err(|e| errors::engine(&e))?;
                    to_response(result, &binary, deadline)
                };
                self.guarded(&parsed.statement, run).await
            }
            (statement, _) => self.run(client, statement, &binary, true).await,
        }
    }
}

/// The second half of a Describe's answer: `fields` as a RowDescription if `parsed` returns
/// rows, else NoData.
async fn send_row_description<C>(
    client: &mut C,
    parsed: &Parsed,
    fields: &[FieldInfo],
) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let message = if returns_rows(parsed) {
        PgWireBackendMessage::RowDescription(RowDescription::new(
            fields.iter().map(Into::into).collect(),
        ))
    } else {
        PgWireBackendMessage::NoData(NoData::new())
    };
    client.send(message).await?;
    Ok(())
}

/// Whether executing `parsed` sends rows: a query or EXPLAIN for the engine, or SHOW. Every
/// other statement answers with its command tag alone (COPY with its copy messages).
fn returns_rows(parsed: &Parsed) -> bool {
    match (&parsed.statement, &parsed.prepared) {
        (Statement::Engine(_), Some(prepared)) => prepared.returns_rows(),
        (Statement::Show(_), _) => true,
        _ => false,
    }
}

/// Whether Execute is answered by [`Connection::execute_whole`] rather than pgwire: a query's
/// portal not yet run, without a row limit (pgwire's Execute collects every row of such a
/// portal before it sends the first), `COPY … TO STDOUT` (whose tag pgwire miscounts) and
/// SHOW (tagged `SHOW`, without a count).
async fn takes_over(portal: &Portal<Parsed>, max_rows: i32) -> bool {
    let parsed = &portal.statement.statement;
    let query = matches!(parsed.statement, Statement::Engine(_))
        && max_rows == 0
        && parsed
            .prepared
            .as_ref()
            .is_some_and(|p| p.command == "SELECT");
    let copy_out = matches!(parsed.statement, Statement::CopyOut(_));
    // SHOW too, so that it completes as `SHOW` (pgwire would append a row count).
    let show = matches!(parsed.statement, Statement::Show(_)) && max_rows == 0;
    (query || copy_out || show)
        && matches!(*portal.state.lock().await, PortalExecutionState::Initial)
}

impl Connection {
    /// Drops the counts of COPY answers never sent (a statement canceled after its answer was
    /// made), so that the next COPY is not tagged with one of them.
    fn forget_copy_out_rows(&self) {
        self.copy_out_rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Sends the answer to a `COPY … TO STDOUT`, tagged with the count its statement made.
    async fn send_copy_out<C>(&self, client: &mut C, response: CopyResponse) -> PgWireResult<()>
    where
        C: Sink<PgWireBackendMessage> + Unpin,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let rows = self
            .copy_out_rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .ok_or_else(|| errors::pg(state::INTERNAL, "a COPY TO STDOUT without its row count"))?;
        copy::send_out(client, response, rows).await
    }

    /// Execute of a portal that [`takes_over`] says is answered here: pgwire's Execute, with
    /// a query's rows sent as they are read and the cancel request covering them. An error
    /// while sending is returned: pgwire reports it and skips to Sync.
    async fn execute_whole<C>(&self, client: &mut C, portal: &Portal<Parsed>) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Parsed>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.set_state(PgWireConnectionState::QueryInProgress);
        self.forget_copy_out_rows();
        let cancel = match client.session_extensions().get::<Arc<ConnectionHandle>>() {
            Some(handle) => Some(handle.start_query().await),
            None => None,
        };
        let query = Box::pin(ExtendedQueryHandler::do_query(self, client, portal, 0));
        let (response, cancel) = match cancel {
            Some(cancel) => match future::select(query, cancel).await {
                Either::Left((response, cancel)) => (response?, Some(cancel)),
                Either::Right(_) => return Err(PgWireError::QueryCanceled),
            },
            None => (query.await?, None),
        };
        match response {
            Response::Query(results) => {
                let sent = match cancel {
                    Some(cancel) => {
                        match future::select(Box::pin(send_rows(client, results, false)), cancel)
                            .await
                        {
                            Either::Left((sent, _)) => sent?,
                            Either::Right(_) => Some(PgWireError::QueryCanceled),
                        }
                    }
                    None => send_rows(client, results, false).await?,
                };
                // Run once: Execute again gets no rows, as from pgwire's finished portal.
                *portal.state.lock().await = PortalExecutionState::Finished;
                if let Some(e) = sent {
                    return Err(e);
                }
            }
            Response::Execution(tag) => send_execution_response(client, tag).await?,
            Response::CopyOut(copy) => self.send_copy_out(client, copy).await?,
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
            }
            Response::Error(e) => return Err(PgWireError::UserError(e)),
            _ => {
                return Err(errors::pg(
                    state::INTERNAL,
                    "unexpected response to a query's Execute",
                ));
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }
}

/// Decodes a portal's parameters into the types the statement expects.
fn bind_parameters(portal: &Portal<Parsed>, prepared: &Prepared) -> PgWireResult<Vec<ScalarValue>> {
    let count = portal.parameter_len();
    let required = prepared
        .param_types
        .len()
        .max(portal.statement.statement.declared_params);
    if count != required {
        return Err(errors::pg(
            state::PROTOCOL,
            format!(
                "bind message supplies {count} parameters, but prepared statement requires {required}"
            ),
        ));
    }
    // Parameters past the plan's were removed with the SQL that used them.
    (0..prepared.param_types.len())
        .map(|i| {
            let expected = prepared.param_types.get(i).and_then(|t| t.as_ref());
            let sent = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or_else(|| expected.map(types::pg_type).unwrap_or(Type::TEXT));
            types::decode_parameter(
                portal.parameters.get(i).and_then(|p| p.as_deref()),
                portal.parameter_format.is_binary(i),
                &sent,
                expected,
                i,
            )
        })
        .collect()
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut guard = self.copy.lock().await;
        let Some(state) = guard.as_mut() else {
            return Ok(());
        };
        if let Err(e) = state.feed(&copy_data.data).await {
            self.metrics.copy_in_finished(state.started(), None);
            // Dropping the COPY (and its bulk ingest) discards everything written so far.
            *guard = None;
            self.blocks.lock().await.statement_failed();
            return Err(e);
        }
        self.registration
            .activity()
            .copy_progress(copy_data.data.len() as u64, state.rows());
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = self.finish_copy(client).await;
        self.idle().await;
        result
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(copy) = self.copy.lock().await.take() {
            self.metrics.copy_in_finished(copy.started(), None);
        }
        self.blocks.lock().await.statement_failed();
        self.idle().await;
        errors::pg(
            state::QUERY_CANCELED,
            format!("COPY from stdin failed: {}", fail.message),
        )
    }
}

impl Connection {
    /// Commits (or, in a transaction block, holds) the COPY FROM STDIN that just ended and
    /// sends its CommandComplete.
    async fn finish_copy<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(state) = self.copy.lock().await.take() else {
            return Err(errors::pg(state::PROTOCOL, "no COPY in progress"));
        };
        let started = state.started();
        let finished = async {
            let bulk = state.finish().await?;
            // In a transaction block the load is held (its files unregistered) until COMMIT.
            let blocks = self.blocks.lock().await;
            match blocks.active() {
                Some(tx) => Ok((tx.hold_bulk(bulk), None)),
                None => {
                    let batch_id = bulk.batch_id_of().map(str::to_string);
                    let receipt = bulk
                        .commit_receipt()
                        .await
                        .map_err(|e| errors::engine(&e))?;
                    Ok((receipt.rows, batch_id.filter(|_| receipt.duplicate)))
                }
            }
        };
        let (rows, duplicate_of) = match finished.await {
            Ok(done) => done,
            Err(e) => {
                self.metrics.copy_in_finished(started, None);
                self.blocks.lock().await.statement_failed();
                return Err(e);
            }
        };
        self.metrics.copy_in_finished(started, Some(rows));
        if let Some(id) = duplicate_of {
            let notice = pgwire::error::ErrorInfo::new(
                "NOTICE".into(),
                "00000".into(),
                format!(
                    "batch_id '{id}' was already committed into this table: nothing was written \
                     again (the row count is the first commit's)"
                ),
            );
            client
                .send(PgWireBackendMessage::NoticeResponse(notice.into()))
                .await?;
        }
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(rows as usize).into(),
            ))
            .await?;
        Ok(())
    }
}

/// The refusal of `COPY … (batch_id …)` inside a transaction block.
fn batch_id_in_transaction_block() -> PgWireError {
    errors::pg(
        state::NOT_SUPPORTED,
        "COPY option batch_id cannot be used inside a transaction block \
         (the block's COMMIT is the unit a retry would repeat)",
    )
}

//! Transaction blocks on a connection: BEGIN, COMMIT, ROLLBACK and savepoints with
//! PostgreSQL's rules, over the engine's [`Transaction`] (INSERTs and COPYs are held until
//! COMMIT; DDL takes effect at once).
//!
//! The connection's block decides the transaction status reported in every ReadyForQuery
//! (`I` idle, `T` in a block, `E` in a failed block), so a client always sees the state the
//! server acts on, including after `ROLLBACK TO SAVEPOINT` recovers a failed block.

use pgwire::error::{ErrorInfo, PgWireResult};
use pgwire::messages::response::TransactionStatus;
use tally_engine::{Database, Transaction};

use super::errors::{self, state};

/// An open transaction block.
pub struct Block {
    /// The held writes.
    pub tx: Transaction,
    /// A statement failed: only ROLLBACK (or ROLLBACK TO a savepoint) is accepted until then.
    pub failed: bool,
}

/// The transaction state of one connection.
#[derive(Default)]
pub struct Blocks {
    open: Option<Block>,
}

/// What a transaction-control statement answers: its command tag, whether it leaves the
/// connection in a block, and a warning to send first.
pub struct Answer {
    /// Command tag.
    pub tag: &'static str,
    /// A notice (PostgreSQL warns about BEGIN in a block and COMMIT outside one).
    pub warning: Option<ErrorInfo>,
}

impl Answer {
    fn tag(tag: &'static str) -> Answer {
        Answer { tag, warning: None }
    }

    fn warn(tag: &'static str, code: &str, message: &str) -> Answer {
        Answer {
            tag,
            warning: Some(ErrorInfo::new(
                "WARNING".into(),
                code.into(),
                message.into(),
            )),
        }
    }
}

impl Blocks {
    /// The open block, unless it failed.
    pub fn active(&self) -> Option<&Transaction> {
        self.open.as_ref().filter(|b| !b.failed).map(|b| &b.tx)
    }

    /// Whether a failed block refuses statements.
    pub fn failed(&self) -> bool {
        self.open.as_ref().is_some_and(|b| b.failed)
    }

    /// The status for ReadyForQuery.
    pub fn status(&self) -> TransactionStatus {
        match &self.open {
            None => TransactionStatus::Idle,
            Some(b) if b.failed => TransactionStatus::Error,
            Some(_) => TransactionStatus::Transaction,
        }
    }

    /// A statement failed: an open block is now aborted.
    pub fn statement_failed(&mut self) {
        if let Some(b) = self.open.as_mut() {
            b.failed = true;
        }
    }

    /// The error for a statement sent to a failed block.
    pub fn refused() -> pgwire::error::PgWireError {
        errors::pg(
            state::IN_FAILED_TRANSACTION,
            "current transaction is aborted, commands ignored until end of transaction block",
        )
    }

    /// `BEGIN` / `START TRANSACTION`.
    pub fn begin(&mut self, db: &Database, tag: &'static str) -> Answer {
        if self.open.is_some() {
            return Answer::warn(
                tag,
                state::ACTIVE_TRANSACTION,
                "there is already a transaction in progress",
            );
        }
        self.open = Some(Block {
            tx: db.begin(),
            failed: false,
        });
        Answer::tag(tag)
    }

    /// Takes the block for `COMMIT`: the transaction to commit (`None` when there is no block,
    /// or a failed one, which COMMIT rolls back), with the answer to give.
    pub fn take_for_commit(&mut self) -> (Option<Transaction>, Answer) {
        match self.open.take() {
            None => (
                None,
                Answer::warn(
                    "COMMIT",
                    state::NO_ACTIVE_TRANSACTION,
                    "there is no transaction in progress",
                ),
            ),
            Some(b) if b.failed => (None, Answer::tag("ROLLBACK")),
            Some(b) => (Some(b.tx), Answer::tag("COMMIT")),
        }
    }

    /// `ROLLBACK`: discards the block's held writes.
    pub fn rollback(&mut self) -> Answer {
        match self.open.take() {
            None => Answer::warn(
                "ROLLBACK",
                state::NO_ACTIVE_TRANSACTION,
                "there is no transaction in progress",
            ),
            Some(b) => {
                b.tx.rollback();
                Answer::tag("ROLLBACK")
            }
        }
    }

    fn in_block(&mut self, command: &str) -> PgWireResult<&mut Block> {
        self.open.as_mut().ok_or_else(|| {
            errors::pg(
                state::NO_ACTIVE_TRANSACTION,
                format!("{command} can only be used in transaction blocks"),
            )
        })
    }

    /// `SAVEPOINT name`.
    pub fn savepoint(&mut self, name: &str) -> PgWireResult<Answer> {
        let block = self.in_block("SAVEPOINT")?;
        if block.failed {
            return Err(Self::refused());
        }
        block.tx.savepoint(name);
        Ok(Answer::tag("SAVEPOINT"))
    }

    /// `RELEASE [SAVEPOINT] name`.
    pub fn release(&mut self, name: &str) -> PgWireResult<Answer> {
        let block = self.in_block("RELEASE SAVEPOINT")?;
        if block.failed {
            return Err(Self::refused());
        }
        block.tx.release(name).map_err(|e| errors::engine(&e))?;
        Ok(Answer::tag("RELEASE"))
    }

    /// `ROLLBACK TO [SAVEPOINT] name`: also recovers a failed block.
    pub fn rollback_to(&mut self, name: &str) -> PgWireResult<Answer> {
        let block = self.in_block("ROLLBACK TO SAVEPOINT")?;
        block.tx.rollback_to(name).map_err(|e| errors::engine(&e))?;
        block.failed = false;
        Ok(Answer::tag("ROLLBACK"))
    }
}

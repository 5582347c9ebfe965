//! UUID and JSON/JSONB columns end to end: the library API, then the wire (INSERT, COPY in
//! three formats, parameters, views, errors) and the clients dashboards use.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use tally_engine::{DataErrorClass, Error, ErrorKind};
use tally_tests::{query_lines, temp_db, test_options};

const A: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
const B: &str = "b1ffcd00-0d1c-4f09-8c7e-7cc0ce491b22";

const EVENTS: &str = "CREATE TABLE ev (id UUID NOT NULL, owner UUID, \
     properties JSONB, raw JSON, n BIGINT)";

#[tokio::test]
async fn library_batches_and_sql_read_uuid_and_json() {
    let (_dir, db) = temp_db(test_options());
    db.sql(EVENTS).await.unwrap();
    // A batch from an embedder: UUIDs as text in any of PostgreSQL's spellings, JSON as text.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("properties", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![
                A.to_uppercase(),
                format!("{{{B}}}"),
                B.replace('-', ""),
            ])),
            Arc::new(StringArray::from(vec![
                Some(r#"{"plan": "pro", "amount": 12.50, "tags": ["a", "b"]}"#),
                Some(r#"{"plan": "free", "amount": 3, "nested": {"k": "v"}}"#),
                None,
            ])),
        ],
    )
    .unwrap();
    db.ingest("ev", batch).await.unwrap();
    assert_eq!(
        query_lines(
            &db,
            &format!(
                "SELECT uuid_out(id), properties->>'plan', properties #>> '{{nested,k}}', \
                 (properties->>'amount')::numeric(10,2), properties->'tags'->>1 \
                 FROM ev WHERE id = '{A}'"
            )
        )
        .await,
        [format!("{A}|pro||12.50|b")]
    );
    assert_eq!(
        query_lines(
            &db,
            &format!("SELECT count(*), count(DISTINCT id) FROM ev WHERE id IN ('{B}', '{A}')")
        )
        .await,
        ["3|2"]
    );
    // Bad text is refused with the column, the row and PostgreSQL's words.
    let bad = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("raw", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec![A, "not-a-uuid"])),
            Arc::new(StringArray::from(vec!["{}", "{}"])),
        ],
    )
    .unwrap();
    let err = db.ingest("ev", bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data(DataErrorClass::InvalidText));
    assert_eq!(
        err.to_string(),
        "table \"ev\", column \"id\", row 2: invalid input syntax for type uuid: \"not-a-uuid\""
    );
    let err = db
        .sql(&format!(
            "INSERT INTO ev (id, raw) VALUES ('{A}', '{{\"a\": }}')"
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data(DataErrorClass::InvalidText));
    assert!(
        err.to_string()
            .contains("invalid input syntax for type json"),
        "{err}"
    );
    let err = db
        .sql("SELECT * FROM ev WHERE id = 'zzz'")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidValue { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid input syntax for type uuid: \"zzz\""
    );
}

//! The hot tier's value encoding: one Arrow IPC stream (schema + one batch) per commit.

use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

/// Encodes a batch as an Arrow IPC stream.
pub(crate) fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut writer = StreamWriter::try_new(&mut buf, &batch.schema())
        .map_err(|e| Error::arrow("encoding a hot batch", e))?;
    writer
        .write(batch)
        .map_err(|e| Error::arrow("encoding a hot batch", e))?;
    writer
        .finish()
        .map_err(|e| Error::arrow("encoding a hot batch", e))?;
    drop(writer);
    Ok(buf)
}

/// Decodes a batch written by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<RecordBatch> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| Error::arrow("decoding a hot batch", e))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow("decoding a hot batch", e))?;
    match batches.len() {
        1 => Ok(batches.into_iter().next().expect("one batch")),
        _ => arrow::compute::concat_batches(&schema, &batches)
            .map_err(|e| Error::arrow("decoding a hot batch", e)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn a_batch_round_trips() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])),
            ],
        )
        .unwrap();
        assert_eq!(decode(&encode(&batch).unwrap()).unwrap(), batch);
        assert!(decode(b"not arrow").is_err());
    }
}

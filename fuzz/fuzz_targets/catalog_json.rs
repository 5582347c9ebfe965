//! Catalog entries (JSON in the `catalog` column family) as `Database::open` decodes them:
//! table definitions, segments and materialized views, with their encoding version check.
//!
//! Input: one byte choosing the entry kind, then the stored bytes. An entry that decodes
//! encodes to JSON that decodes to the same entry; a table definition's schema and checks run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_engine::fuzzing::{
    decode_segment, decode_table_def, decode_view_def, encode_segment, encode_table_def,
    encode_view_def,
};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            let Ok(def) = decode_table_def(bytes) else { return };
            let schema = def.arrow_schema();
            assert_eq!(schema.fields().len(), def.columns.len());
            let _ = def.validate();
            let _ = def.time_column_index();
            for column in &def.columns {
                let _ = column.column_type.to_string();
                let _ = column.column_type.is_temporal();
            }
            let again = decode_table_def(&encode_table_def(&def)).expect("an encoded table decodes");
            assert_eq!(again, def);
        }
        1 => {
            let Ok(segment) = decode_segment(bytes) else { return };
            let again = decode_segment(&encode_segment(&segment)).expect("an encoded segment decodes");
            assert_eq!(again, segment);
        }
        _ => {
            let Ok(view) = decode_view_def(bytes) else { return };
            let again = decode_view_def(&encode_view_def(&view)).expect("an encoded view decodes");
            assert_eq!(again, view);
        }
    }
});

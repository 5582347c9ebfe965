//! Arrays (Arrow lists) in PostgreSQL's forms: the text form `{a,b,NULL}` with its quoting
//! rules, and the binary form (dimensions, element OID, then each element with its length).

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use tally_engine::reexports::arrow::array::{Array, ArrayRef, AsArray};
use tally_engine::reexports::arrow::datatypes::DataType;

use super::{is_null, pg_type, write_binary, write_text};

/// The PostgreSQL array type whose elements are of `element`'s type (`None`: not one Tally
/// sends, such as arrays of arrays, which go out as text).
pub fn array_type(element: &DataType) -> Option<Type> {
    if matches!(element, DataType::List(_) | DataType::LargeList(_)) {
        return None;
    }
    Some(match pg_type(element) {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::TIME => Type::TIME_ARRAY,
        Type::INTERVAL => Type::INTERVAL_ARRAY,
        _ => Type::TEXT_ARRAY,
    })
}

/// The elements of the list at `row` (a List or LargeList array).
fn elements(array: &dyn Array, row: usize) -> Option<ArrayRef> {
    match array.data_type() {
        DataType::List(_) => Some(array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => Some(array.as_list::<i64>().value(row)),
        _ => None,
    }
}

/// Writes the text form of the list at `row`; `false` if `array` is not a list.
pub fn write_array_text(array: &dyn Array, row: usize, out: &mut String) -> PgWireResult<bool> {
    let Some(values) = elements(array, row) else {
        return Ok(false);
    };
    out.push('{');
    let mut element = String::new();
    for i in 0..values.len() {
        if i > 0 {
            out.push(',');
        }
        if is_null(values.as_ref(), i) {
            out.push_str("NULL");
            continue;
        }
        element.clear();
        write_text(values.as_ref(), i, &mut element)?;
        quote_element(&element, out);
    }
    out.push('}');
    Ok(true)
}

/// An element as PostgreSQL's array output writes it: quoted when empty, `NULL`, or holding
/// braces, commas, quotes, backslashes or white space.
fn quote_element(element: &str, out: &mut String) {
    let needs_quotes = element.is_empty()
        || element.eq_ignore_ascii_case("null")
        || element
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
    if !needs_quotes {
        out.push_str(element);
        return;
    }
    out.push('"');
    for c in element.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Writes the binary form of the list at `row`; `false` if `array` is not a list.
pub fn write_array_binary(array: &dyn Array, row: usize, out: &mut BytesMut) -> PgWireResult<bool> {
    let (Some(values), DataType::List(field) | DataType::LargeList(field)) =
        (elements(array, row), array.data_type())
    else {
        return Ok(false);
    };
    let element_oid = pg_type(field.data_type()).oid();
    let has_nulls = (0..values.len()).any(|i| is_null(values.as_ref(), i));
    if values.is_empty() {
        out.put_i32(0);
        out.put_i32(0);
        out.put_u32(element_oid);
        return Ok(true);
    }
    out.put_i32(1);
    out.put_i32(i32::from(has_nulls));
    out.put_u32(element_oid);
    out.put_i32(values.len() as i32);
    out.put_i32(1);
    for i in 0..values.len() {
        if is_null(values.as_ref(), i) {
            out.put_i32(-1);
            continue;
        }
        let at = out.len();
        out.put_i32(0);
        write_binary(values.as_ref(), i, out)?;
        let len = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tally_engine::reexports::arrow::array::{ListArray, StringArray};
    use tally_engine::reexports::arrow::buffer::OffsetBuffer;
    use tally_engine::reexports::arrow::datatypes::{Field, Int64Type};

    use super::*;

    #[test]
    fn text_arrays_quote_like_postgres() {
        let values = StringArray::from(vec![
            Some("public"),
            Some("My Schema"),
            None,
            Some(""),
            Some("a\"b"),
            Some("NULL"),
        ]);
        let list = ListArray::new(
            Arc::new(Field::new_list_field(DataType::Utf8, true)),
            OffsetBuffer::from_lengths([6, 0]),
            Arc::new(values),
            None,
        );
        let mut out = String::new();
        assert!(write_array_text(&list, 0, &mut out).unwrap());
        assert_eq!(out, r#"{public,"My Schema",NULL,"","a\"b","NULL"}"#);
        out.clear();
        write_array_text(&list, 1, &mut out).unwrap();
        assert_eq!(out, "{}");
        assert_eq!(array_type(&DataType::Utf8), Some(Type::TEXT_ARRAY));
    }

    #[test]
    fn binary_arrays_carry_dimensions_and_element_type() {
        let list =
            ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(7), None])]);
        let mut out = BytesMut::new();
        assert!(write_array_binary(&list, 0, &mut out).unwrap());
        let mut expected = BytesMut::new();
        for v in [1, 1, 20, 2, 1, 8] {
            expected.put_i32(v);
        }
        expected.put_i64(7);
        expected.put_i32(-1);
        assert_eq!(out, expected);
    }
}

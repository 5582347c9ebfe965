// A pgjdbc session against a running Tally server, as a Java application would write it.
//
// Usage: java -cp /usr/share/java/postgresql.jar tests/java/JdbcSession.java PORT [USER [DATABASE]]
//
// Run by tests/e2e/pg_jdbc.rs in source-file mode (no build tool). pgjdbc uses the extended
// protocol for everything but COPY, even for a plain Statement, and is stricter about it than
// the other drivers: `executeUpdate` fails with "A result was returned when none was expected"
// when a Describe answers with a RowDescription instead of NoData. Past `prepareThreshold`
// (five executions) a PreparedStatement becomes a named server-side statement, and its results
// are then asked for in binary, so the loops below run ten times.
//
// Each check is one method, listed in CHECKS; it prints `ok: …` for what it verified. The first
// failure prints `FAIL: <check>: <why>` and exits 1; a full run prints PASS last.

import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.UUID;

import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PGobject;

public class JdbcSession {
    /** The table most checks write to and read from: one column per type the checks bind. */
    static final String TABLE = "jdbc_readings";
    static final String COLUMNS = "id, n, big, x, label, ts, ok, amount";
    static final String DDL = "CREATE TABLE " + TABLE + " ("
            + "id BIGINT NOT NULL, n INTEGER, big BIGINT, x DOUBLE PRECISION, label TEXT, "
            + "ts TIMESTAMP, ok BOOLEAN, amount NUMERIC(12, 3)) WITH (time_column = 'ts')";
    static final String INSERT = "INSERT INTO " + TABLE + " (" + COLUMNS + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    /** More executions than pgjdbc's default prepareThreshold (5): the later ones are server-prepared. */
    static final int PAST_THRESHOLD = 10;

    /** A check: one aspect of the session, run against the shared connection. */
    interface Check {
        void run(Session session) throws Exception;
    }

    /** The checks, in order (later ones count rows that earlier ones wrote). */
    static final Map<String, Check> CHECKS = new LinkedHashMap<>();
    static {
        CHECKS.put("create and drop through Statement", JdbcSession::createAndDropStatement);
        CHECKS.put("create and drop through PreparedStatement", JdbcSession::createAndDropPrepared);
        CHECKS.put("prepared INSERT with executeUpdate", JdbcSession::preparedInsert);
        CHECKS.put("multi-row prepared INSERT", JdbcSession::multiRowInsert);
        CHECKS.put("Statement.executeUpdate of an INSERT", JdbcSession::statementInsert);
        CHECKS.put("batch INSERT", JdbcSession::batchInsert);
        CHECKS.put("batch INSERT with reWriteBatchedInserts", JdbcSession::rewrittenBatchInsert);
        CHECKS.put("INSERT with generated keys (RETURNING)", JdbcSession::insertReturning);
        CHECKS.put("CopyManager copyIn (CSV)", JdbcSession::copyIn);
        CHECKS.put("CopyManager copyOut (CSV)", JdbcSession::copyOut);
        CHECKS.put("server-prepared SELECT with parameters", JdbcSession::preparedSelect);
        CHECKS.put("DatabaseMetaData getTables", JdbcSession::metadataTables);
        CHECKS.put("DatabaseMetaData getColumns", JdbcSession::metadataColumns);
        CHECKS.put("transaction commit and rollback", JdbcSession::transactions);
        CHECKS.put("BEGIN and COMMIT as statements", JdbcSession::beginCommitStatements);
        CHECKS.put("SET through PreparedStatement", JdbcSession::preparedSet);
        CHECKS.put("materialized view", JdbcSession::materializedView);
        CHECKS.put("UUID and JSONB columns", JdbcSession::uuidAndJson);
        CHECKS.put("errors keep the connection usable", JdbcSession::errors);
    }

    /** What the checks share: the server's address and one open connection. */
    static final class Session {
        final String url;
        final Properties props;
        final Connection conn;
        /** Rows of TABLE written so far, as the checks count them. */
        long rows;

        Session(String url, Properties props) throws SQLException {
            this.url = url;
            this.props = props;
            this.conn = DriverManager.getConnection(url, props);
        }

        /** Another connection with `extra` properties on top of the session's. */
        Connection connect(String... extra) throws SQLException {
            Properties p = new Properties();
            p.putAll(props);
            for (int i = 0; i + 1 < extra.length; i += 2) {
                p.setProperty(extra[i], extra[i + 1]);
            }
            return DriverManager.getConnection(url, p);
        }

        long count(String sql) throws SQLException {
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
                if (!rs.next()) {
                    throw new AssertionError("no row from " + sql);
                }
                return rs.getLong(1);
            }
        }

        long tableRows() throws SQLException {
            return count("SELECT count(*) FROM " + TABLE);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: JdbcSession.java PORT [USER [DATABASE]]");
            System.exit(2);
        }
        String user = args.length > 1 ? args[1] : "tally";
        String database = args.length > 2 ? args[2] : "tally";
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/" + database;
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("sslmode", "disable");
        props.setProperty("ApplicationName", "JdbcSession");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "60");
        Session session = new Session(url, props);
        System.out.println("connected: " + session.conn.getMetaData().getDatabaseProductName() + " "
                + session.conn.getMetaData().getDatabaseProductVersion() + ", pgjdbc "
                + session.conn.getMetaData().getDriverVersion());
        for (Map.Entry<String, Check> check : CHECKS.entrySet()) {
            try {
                check.getValue().run(session);
            } catch (Throwable e) {
                System.out.println("FAIL: " + check.getKey() + ": " + describe(e));
                e.printStackTrace(System.out);
                System.exit(1);
            }
        }
        session.conn.close();
        System.out.println("PASS");
    }

    /** An exception's message, with the SQLSTATE of a database error. */
    static String describe(Throwable e) {
        if (e instanceof SQLException) {
            return e.getMessage() + " (SQLSTATE " + ((SQLException) e).getSQLState() + ")";
        }
        return String.valueOf(e);
    }

    /** Throws with both values unless they are equal; prints the check otherwise. */
    static void check(Object actual, Object expected, String what) {
        if (!Objects.deepEquals(actual, expected)) {
            throw new AssertionError(what + ": expected " + show(expected) + ", got " + show(actual));
        }
        System.out.println("ok: " + what);
    }

    static String show(Object value) {
        if (value instanceof int[]) {
            return Arrays.toString((int[]) value);
        }
        if (value instanceof Object[]) {
            return Arrays.deepToString((Object[]) value);
        }
        return value instanceof String ? "\"" + value + "\"" : String.valueOf(value);
    }

    // Row i of TABLE, as the checks bind it and expect it back.

    static int n(long i) {
        return (int) (i * 7 - 500);
    }

    static long big(long i) {
        return i * 3_000_000_000L;
    }

    static double x(long i) {
        return i * 1.25 - 0.5;
    }

    static String label(long i) {
        return "row " + i + " naïve ✓";
    }

    static LocalDateTime ts(long i) {
        return LocalDateTime.of(2026, 1, 2, 3, 4, 5, 123_456_000).plusHours(i).plusNanos(i * 1000);
    }

    static boolean ok(long i) {
        return i % 2 == 0;
    }

    static BigDecimal amount(long i) {
        return new BigDecimal(i * 1001 - 7000).movePointLeft(3);
    }

    /** Binds row i to INSERT's eight parameters. */
    static void bindRow(PreparedStatement ps, long i, int offset) throws SQLException {
        ps.setLong(offset + 1, i);
        ps.setInt(offset + 2, n(i));
        ps.setLong(offset + 3, big(i));
        ps.setDouble(offset + 4, x(i));
        ps.setString(offset + 5, label(i));
        ps.setTimestamp(offset + 6, Timestamp.valueOf(ts(i)));
        ps.setBoolean(offset + 7, ok(i));
        ps.setBigDecimal(offset + 8, amount(i));
    }

    // The checks.

    static void createAndDropStatement(Session s) throws SQLException {
        try (Statement st = s.conn.createStatement()) {
            check(st.executeUpdate("CREATE TABLE jdbc_scratch (a BIGINT, b TEXT)"), 0,
                    "Statement.executeUpdate(CREATE TABLE) counts 0");
            check(st.execute("DROP TABLE jdbc_scratch"), false, "Statement.execute(DROP TABLE) has no result set");
            check(st.getUpdateCount(), 0, "DROP TABLE's update count is 0");
            check(st.executeUpdate("DROP TABLE IF EXISTS jdbc_scratch"), 0, "DROP TABLE IF EXISTS of a missing table");
            check(st.executeUpdate(DDL), 0, "CREATE TABLE " + TABLE);
        }
    }

    static void createAndDropPrepared(Session s) throws SQLException {
        for (int round = 0; round < 2; round++) {
            try (PreparedStatement create = s.conn.prepareStatement("CREATE TABLE jdbc_scratch (a BIGINT)")) {
                check(create.executeUpdate(), 0, "PreparedStatement CREATE TABLE, round " + round);
            }
            try (PreparedStatement drop = s.conn.prepareStatement("DROP TABLE jdbc_scratch")) {
                check(drop.execute(), false, "PreparedStatement DROP TABLE returns no result set, round " + round);
            }
        }
    }

    static void preparedInsert(Session s) throws SQLException {
        try (PreparedStatement ps = s.conn.prepareStatement(INSERT)) {
            for (int i = 0; i < PAST_THRESHOLD; i++) {
                bindRow(ps, s.rows, 0);
                int updated = ps.executeUpdate();
                if (updated != 1) {
                    check(updated, 1, "executeUpdate of INSERT run " + i);
                }
                s.rows++;
            }
            check(ps.unwrap(PGStatement.class).isUseServerPrepare(), true,
                    "the INSERT became server-prepared past prepareThreshold");
            System.out.println("ok: executeUpdate of a prepared INSERT counts 1, " + PAST_THRESHOLD + " times");
        }
        check(s.tableRows(), s.rows, "the inserted rows are there");
    }

    static void multiRowInsert(Session s) throws SQLException {
        String sql = "INSERT INTO " + TABLE + " (" + COLUMNS + ") VALUES "
                + "(?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?)";
        try (PreparedStatement ps = s.conn.prepareStatement(sql)) {
            for (int k = 0; k < 3; k++) {
                bindRow(ps, s.rows + k, k * 8);
            }
            check(ps.executeUpdate(), 3, "executeUpdate of a three-row INSERT counts 3");
            s.rows += 3;
        }
        check(s.tableRows(), s.rows, "the three rows are there");
    }

    static void statementInsert(Session s) throws SQLException {
        try (Statement st = s.conn.createStatement()) {
            long i = s.rows;
            int updated = st.executeUpdate("INSERT INTO " + TABLE + " (" + COLUMNS + ") VALUES ("
                    + i + ", " + n(i) + ", " + big(i) + ", " + x(i) + ", '" + label(i) + "', '"
                    + Timestamp.valueOf(ts(i)) + "', " + ok(i) + ", " + amount(i) + ")");
            check(updated, 1, "Statement.executeUpdate of an INSERT counts 1");
            s.rows++;
            check(st.execute("INSERT INTO " + TABLE + " (id) VALUES (-1)"), false,
                    "Statement.execute of an INSERT has no result set");
            check(st.getUpdateCount(), 1, "its update count is 1");
            s.rows++;
        }
        check(s.tableRows(), s.rows, "the rows are there");
    }

    static void batchInsert(Session s) throws SQLException {
        try (PreparedStatement ps = s.conn.prepareStatement(INSERT)) {
            int[] expected = new int[25];
            for (int k = 0; k < expected.length; k++) {
                bindRow(ps, s.rows + k, 0);
                ps.addBatch();
                expected[k] = 1;
            }
            check(ps.executeBatch(), expected, "executeBatch counts 1 per row");
            s.rows += expected.length;
        }
        check(s.tableRows(), s.rows, "the batch's rows are there");
    }

    static void rewrittenBatchInsert(Session s) throws SQLException {
        try (Connection conn = s.connect("reWriteBatchedInserts", "true");
                PreparedStatement ps = conn.prepareStatement(INSERT)) {
            int rows = 100;
            for (int k = 0; k < rows; k++) {
                bindRow(ps, s.rows + k, 0);
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            // A rewritten batch is a few multi-row INSERTs: pgjdbc cannot tell which row each
            // counted, so every entry is SUCCESS_NO_INFO.
            check(counts.length, rows, "a rewritten batch reports one entry per row");
            for (int count : counts) {
                if (count != Statement.SUCCESS_NO_INFO && count != 1) {
                    check(counts, "SUCCESS_NO_INFO or 1 each", "the rewritten batch's counts");
                }
            }
            System.out.println("ok: the rewritten batch's counts are SUCCESS_NO_INFO or 1");
            s.rows += rows;
        }
        check(s.tableRows(), s.rows, "the rewritten batch's rows are there");
    }

    static void insertReturning(Session s) throws SQLException {
        try (PreparedStatement ps = s.conn.prepareStatement(INSERT, Statement.RETURN_GENERATED_KEYS)) {
            bindRow(ps, s.rows, 0);
            ps.executeUpdate();
            throw new AssertionError("INSERT … RETURNING ran; expected SQLSTATE 0A000");
        } catch (SQLException e) {
            check(e.getSQLState(), "0A000", "INSERT … RETURNING is refused as not supported");
            check(e.getMessage().contains("RETURNING"), true, "and the message names RETURNING");
        }
        check(s.tableRows(), s.rows, "nothing was inserted by it");
    }

    static void copyIn(Session s) throws Exception {
        CopyManager copy = s.conn.unwrap(PGConnection.class).getCopyAPI();
        StringBuilder csv = new StringBuilder();
        int rows = 50;
        for (long i = s.rows; i < s.rows + rows; i++) {
            csv.append(i).append(',').append(n(i)).append(',').append(big(i)).append(',').append(x(i))
                    .append(",\"").append(label(i)).append("\",").append(Timestamp.valueOf(ts(i))).append(',')
                    .append(ok(i)).append(',').append(amount(i)).append('\n');
        }
        long copied = copy.copyIn("COPY " + TABLE + " (" + COLUMNS + ") FROM STDIN (FORMAT csv)",
                new StringReader(csv.toString()));
        check(copied, (long) rows, "copyIn reports the rows copied");
        s.rows += rows;
        check(s.tableRows(), s.rows, "the copied rows are there");
    }

    static void copyOut(Session s) throws Exception {
        CopyManager copy = s.conn.unwrap(PGConnection.class).getCopyAPI();
        StringWriter out = new StringWriter();
        long copied = copy.copyOut("COPY (SELECT id, label, ok, amount FROM " + TABLE
                + " WHERE id BETWEEN 0 AND 2 ORDER BY id) TO STDOUT (FORMAT csv, HEADER)", out);
        check(copied, 3L, "copyOut reports the rows copied");
        String expected = "id,label,ok,amount\n"
                + "0," + label(0) + ",t," + amount(0) + "\n"
                + "1," + label(1) + ",f," + amount(1) + "\n"
                + "2," + label(2) + ",t," + amount(2) + "\n";
        check(out.toString(), expected, "copyOut writes the CSV with a header");
    }

    static void preparedSelect(Session s) throws SQLException {
        String sql = "SELECT " + COLUMNS + " FROM " + TABLE
                + " WHERE id = ? AND n = ? AND big = ? AND x = ? AND label = ? AND ts = ? AND ok = ? AND amount = ?";
        try (PreparedStatement ps = s.conn.prepareStatement(sql)) {
            for (long i = 0; i < PAST_THRESHOLD; i++) {
                bindRow(ps, i, 0);
                try (ResultSet rs = ps.executeQuery()) {
                    if (!rs.next()) {
                        throw new AssertionError("run " + i + ": no row for id " + i);
                    }
                    List<Object> got = List.of(rs.getLong(1), rs.getInt(2), rs.getLong(3), rs.getDouble(4),
                            rs.getString(5), rs.getTimestamp(6).toLocalDateTime(), rs.getBoolean(7),
                            rs.getBigDecimal(8));
                    List<Object> expected = List.of(i, n(i), big(i), x(i), label(i), ts(i), ok(i), amount(i));
                    if (!got.equals(expected)) {
                        check(got, expected, "run " + i + ": the row's values");
                    }
                    if (rs.next()) {
                        throw new AssertionError("run " + i + ": more than one row for id " + i);
                    }
                }
            }
            check(ps.unwrap(PGStatement.class).isUseServerPrepare(), true,
                    "the SELECT became server-prepared (binary results)");
            System.out.println("ok: a prepared SELECT with int, bigint, double, text, timestamp, boolean and "
                    + "numeric parameters finds its row, " + PAST_THRESHOLD + " times");
        }
        // The same values through getObject: the Java types pgjdbc maps each column to.
        try (PreparedStatement ps = s.conn.prepareStatement("SELECT " + COLUMNS + " FROM " + TABLE + " WHERE id = ?")) {
            for (int run = 0; run < PAST_THRESHOLD; run++) {
                ps.setLong(1, 3);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    List<String> classes = new ArrayList<>();
                    for (int c = 1; c <= 8; c++) {
                        classes.add(rs.getObject(c).getClass().getSimpleName());
                    }
                    List<String> expected = List.of("Long", "Integer", "Long", "Double", "String", "Timestamp",
                            "Boolean", "BigDecimal");
                    if (!classes.equals(expected) || run == PAST_THRESHOLD - 1) {
                        check(classes, expected, "getObject's Java types, run " + run);
                    }
                }
            }
        }
    }

    static void metadataTables(Session s) throws SQLException {
        try (Statement st = s.conn.createStatement()) {
            st.executeUpdate("CREATE MATERIALIZED VIEW jdbc_by_ok AS SELECT ok, count(*) AS rows, "
                    + "sum(amount) AS total FROM " + TABLE + " GROUP BY ok");
        }
        DatabaseMetaData meta = s.conn.getMetaData();
        List<String> tables = new ArrayList<>();
        try (ResultSet rs = meta.getTables(null, "public", "jdbc%", new String[] {"TABLE"})) {
            while (rs.next()) {
                tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME") + " "
                        + rs.getString("TABLE_TYPE"));
            }
        }
        check(tables, List.of("public." + TABLE + " TABLE"), "getTables(TABLE) lists the table");
        List<String> views = new ArrayList<>();
        try (ResultSet rs = meta.getTables(null, "public", "jdbc%", new String[] {"MATERIALIZED VIEW"})) {
            while (rs.next()) {
                views.add(rs.getString("TABLE_NAME") + " " + rs.getString("TABLE_TYPE"));
            }
        }
        check(views, List.of("jdbc_by_ok MATERIALIZED VIEW"), "getTables(MATERIALIZED VIEW) lists the view");
        List<String> all = new ArrayList<>();
        try (ResultSet rs = meta.getTables(null, null, "jdbc%", null)) {
            while (rs.next()) {
                all.add(rs.getString("TABLE_NAME"));
            }
        }
        check(all.contains(TABLE) && all.contains("jdbc_by_ok"), true, "getTables(all types) lists both " + all);
    }

    static void metadataColumns(Session s) throws SQLException {
        DatabaseMetaData meta = s.conn.getMetaData();
        List<String> columns = new ArrayList<>();
        try (ResultSet rs = meta.getColumns(null, "public", TABLE, null)) {
            while (rs.next()) {
                columns.add(rs.getInt("ORDINAL_POSITION") + " " + rs.getString("COLUMN_NAME") + " "
                        + rs.getString("TYPE_NAME") + " " + rs.getInt("DATA_TYPE") + " "
                        + rs.getString("IS_NULLABLE"));
            }
        }
        check(columns, List.of(
                "1 id int8 " + java.sql.Types.BIGINT + " NO",
                "2 n int4 " + java.sql.Types.INTEGER + " YES",
                "3 big int8 " + java.sql.Types.BIGINT + " YES",
                "4 x float8 " + java.sql.Types.DOUBLE + " YES",
                "5 label text " + java.sql.Types.VARCHAR + " YES",
                "6 ts timestamp " + java.sql.Types.TIMESTAMP + " YES",
                "7 ok bool " + java.sql.Types.BIT + " YES",
                "8 amount numeric " + java.sql.Types.NUMERIC + " YES"),
                "getColumns gives each column's name, type and nullability");
        try (ResultSet rs = meta.getColumns(null, "public", TABLE, "amount")) {
            check(rs.next(), true, "getColumns finds one column by name");
            check(List.of(rs.getInt("COLUMN_SIZE"), rs.getInt("DECIMAL_DIGITS")), List.of(12, 3),
                    "numeric(12, 3)'s precision and scale");
        }
    }

    static void transactions(Session s) throws SQLException {
        Connection conn = s.conn;
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement(INSERT);
                Connection other = s.connect()) {
            bindRow(ps, s.rows, 0);
            check(ps.executeUpdate(), 1, "an INSERT in a transaction counts 1");
            check(s.tableRows(), s.rows + 1, "the transaction reads its own row");
            conn.rollback();
            check(s.tableRows(), s.rows, "rollback discards it");
            for (int k = 0; k < 3; k++) {
                bindRow(ps, s.rows + k, 0);
                ps.executeUpdate();
            }
            try (Statement st = other.createStatement();
                    ResultSet rs = st.executeQuery("SELECT count(*) FROM " + TABLE)) {
                rs.next();
                check(rs.getLong(1), s.rows, "another connection does not see uncommitted rows");
            }
            conn.commit();
            s.rows += 3;
            try (Statement st = other.createStatement();
                    ResultSet rs = st.executeQuery("SELECT count(*) FROM " + TABLE)) {
                rs.next();
                check(rs.getLong(1), s.rows, "after commit it does");
            }
        } finally {
            conn.setAutoCommit(true);
        }
        check(s.tableRows(), s.rows, "autocommit again: the committed rows stay");
    }

    static void beginCommitStatements(Session s) throws SQLException {
        try (Statement st = s.conn.createStatement();
                PreparedStatement begin = s.conn.prepareStatement("BEGIN");
                PreparedStatement commit = s.conn.prepareStatement("COMMIT");
                PreparedStatement insert = s.conn.prepareStatement(INSERT)) {
            check(begin.executeUpdate(), 0, "a prepared BEGIN counts 0");
            bindRow(insert, s.rows, 0);
            check(insert.executeUpdate(), 1, "an INSERT in the block");
            check(commit.executeUpdate(), 0, "a prepared COMMIT counts 0");
            s.rows++;
            check(st.execute("BEGIN"), false, "Statement BEGIN has no result set");
            bindRow(insert, s.rows, 0);
            insert.executeUpdate();
            check(st.execute("ROLLBACK"), false, "Statement ROLLBACK has no result set");
        }
        check(s.tableRows(), s.rows, "COMMIT kept its row, ROLLBACK dropped its own");
    }

    static void preparedSet(Session s) throws SQLException {
        try (PreparedStatement set = s.conn.prepareStatement("SET application_name = 'jdbc prepared'")) {
            check(set.executeUpdate(), 0, "a prepared SET counts 0");
        }
        try (PreparedStatement show = s.conn.prepareStatement("SHOW application_name");
                ResultSet rs = show.executeQuery()) {
            check(rs.next(), true, "a prepared SHOW returns a row");
            check(rs.getString(1), "jdbc prepared", "SHOW sees the prepared SET");
        }
        try (PreparedStatement set = s.conn.prepareStatement("SET statement_timeout = '30s'")) {
            for (int i = 0; i < PAST_THRESHOLD; i++) {
                set.executeUpdate();
            }
        }
        try (Statement st = s.conn.createStatement(); ResultSet rs = st.executeQuery("SHOW statement_timeout")) {
            rs.next();
            check(rs.getString(1), "30s", "a server-prepared SET statement_timeout took effect");
        }
        try (PreparedStatement reset = s.conn.prepareStatement("RESET statement_timeout")) {
            check(reset.executeUpdate(), 0, "a prepared RESET counts 0");
        }
    }

    static void materializedView(Session s) throws SQLException {
        Map<Boolean, List<Object>> fromTable = new LinkedHashMap<>();
        try (Statement st = s.conn.createStatement();
                ResultSet rs = st.executeQuery("SELECT ok, count(*), sum(amount) FROM " + TABLE
                        + " GROUP BY ok ORDER BY ok")) {
            while (rs.next()) {
                fromTable.put(rs.getObject(1) == null ? null : rs.getBoolean(1),
                        List.of(rs.getLong(2), String.valueOf(rs.getBigDecimal(3))));
            }
        }
        try (PreparedStatement ps = s.conn.prepareStatement(
                "SELECT ok, rows, total FROM jdbc_by_ok WHERE rows > ? ORDER BY ok")) {
            for (int run = 0; run < PAST_THRESHOLD; run++) {
                ps.setLong(1, 0);
                Map<Boolean, List<Object>> fromView = new LinkedHashMap<>();
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        fromView.put(rs.getObject(1) == null ? null : rs.getBoolean(1),
                                List.of(rs.getLong(2), String.valueOf(rs.getBigDecimal(3))));
                    }
                }
                if (!fromView.equals(fromTable) || run == PAST_THRESHOLD - 1) {
                    check(fromView, fromTable, "the view equals its query over the table, run " + run);
                }
            }
        }
        try (PreparedStatement drop = s.conn.prepareStatement("DROP MATERIALIZED VIEW jdbc_by_ok")) {
            check(drop.executeUpdate(), 0, "a prepared DROP MATERIALIZED VIEW counts 0");
        }
    }

    static void uuidAndJson(Session s) throws SQLException {
        UUID first = UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        UUID second = UUID.nameUUIDFromBytes("jdbc".getBytes());
        try (Statement st = s.conn.createStatement()) {
            st.executeUpdate("CREATE TABLE jdbc_docs (id UUID NOT NULL, body JSONB, n BIGINT)");
        }
        try (PreparedStatement ps = s.conn.prepareStatement("INSERT INTO jdbc_docs VALUES (?, ?, ?)")) {
            PGobject body = new PGobject();
            body.setType("jsonb");
            body.setValue("{\"plan\": \"pro\", \"amount\": 2.5}");
            ps.setObject(1, first);
            ps.setObject(2, body);
            ps.setLong(3, 1);
            check(ps.executeUpdate(), 1, "INSERT of a java.util.UUID and a jsonb PGobject");
            ps.setObject(1, second);
            ps.setString(2, "{\"plan\": \"free\"}");
            ps.setLong(3, 2);
            ps.executeUpdate();
        }
        try (PreparedStatement ps = s.conn.prepareStatement(
                "SELECT id, body, body->>'plan', (body->>'amount')::double precision FROM jdbc_docs WHERE id = ?")) {
            for (int run = 0; run < PAST_THRESHOLD; run++) {
                ps.setObject(1, first);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), true, "a row for a UUID parameter, run " + run);
                    check(rs.getObject(1), first, "a uuid column reads as java.util.UUID, run " + run);
                    check(rs.getMetaData().getColumnTypeName(2), "jsonb", "a jsonb column's type name");
                    check(rs.getString(2), "{\"plan\": \"pro\", \"amount\": 2.5}", "jsonb text, run " + run);
                    check(rs.getString(3), "pro", "body->>'plan'");
                    check(rs.getDouble(4), 2.5, "(body->>'amount')::double precision");
                }
            }
        }
        try (PreparedStatement ps = s.conn.prepareStatement("SELECT count(*) FROM jdbc_docs WHERE id = ?::uuid")) {
            ps.setString(1, "not-a-uuid");
            ps.executeQuery();
            throw new AssertionError("a bad uuid was accepted");
        } catch (SQLException e) {
            check(e.getSQLState(), "22P02", "a bad uuid is 22P02");
        }
        try (Statement st = s.conn.createStatement()) {
            st.executeUpdate("DROP TABLE jdbc_docs");
        }
    }

    static void errors(Session s) throws SQLException {
        try (PreparedStatement ps = s.conn.prepareStatement("SELECT * FROM jdbc_missing WHERE a = ?")) {
            ps.setInt(1, 1);
            ps.executeQuery();
            throw new AssertionError("a missing table was read");
        } catch (SQLException e) {
            check(e.getSQLState(), "42P01", "a missing table is 42P01");
        }
        try (PreparedStatement ps = s.conn.prepareStatement("INSERT INTO " + TABLE + " (id) VALUES (?)")) {
            ps.setNull(1, java.sql.Types.BIGINT);
            ps.executeUpdate();
            throw new AssertionError("a NULL id was inserted");
        } catch (SQLException e) {
            check(e.getSQLState(), "23502", "a NULL in a NOT NULL column is 23502");
        }
        check(s.tableRows(), s.rows, "the connection still answers after errors");
    }
}

// pgjdbc (Debian's libpostgresql-jdbc-java) against proctor: every check asserts.
// usage: java -cp /usr/share/java/postgresql.jar:DIR JdbcTest JDBC_URL USER PASSWORD
import java.math.BigDecimal;
import java.sql.*;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.*;

public class JdbcTest {
    static String url, user, password;
    static final String T = "compat_jdbc";

    interface Check { void run() throws Exception; }

    static void check(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static Connection connect(Properties extra) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", user);
        p.setProperty("password", password);
        if (extra != null) p.putAll(extra);
        return DriverManager.getConnection(url, p);
    }

    static void types() throws Exception {
        try (Connection c = connect(null)) {
            try (Statement s = c.createStatement()) {
                s.executeUpdate("delete from " + T + " where id >= 0");
            }
            OffsetDateTime ts = OffsetDateTime.of(2026, 12, 6, 10, 11, 12, 345678000, ZoneOffset.UTC);
            try (PreparedStatement ps = c.prepareStatement(
                    "insert into " + T + " (id, name, data, amount, ts, js, arr) values (?, ?, ?, ?, ?, ?::jsonb, ?)")) {
                ps.setInt(1, 1);
                ps.setString(2, "d'Artagnan");
                ps.setBytes(3, new byte[] {0, 1, (byte) 0xff});
                ps.setBigDecimal(4, new BigDecimal("-42.000001"));
                ps.setObject(5, ts);
                ps.setString(6, "{\"k\": 1}");
                ps.setArray(7, c.createArrayOf("int4", new Integer[] {7, 8}));
                check(ps.executeUpdate() == 1, "insert count");
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "select id, name, data, amount, ts, js, arr from " + T + " where id = ?")) {
                ps.setInt(1, 1);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "a row");
                    check(rs.getString(2).equals("d'Artagnan"), "name");
                    check(Arrays.equals(rs.getBytes(3), new byte[] {0, 1, (byte) 0xff}), "bytea");
                    check(rs.getBigDecimal(4).compareTo(new BigDecimal("-42.000001")) == 0, "numeric " + rs.getBigDecimal(4));
                    check(rs.getObject(5, OffsetDateTime.class).toInstant().equals(ts.toInstant()), "timestamptz " + rs.getObject(5, OffsetDateTime.class));
                    check(rs.getString(6).equals("{\"k\": 1}"), "jsonb " + rs.getString(6));
                    Integer[] arr = (Integer[]) rs.getArray(7).getArray();
                    check(Arrays.equals(arr, new Integer[] {7, 8}), "array");
                    check(!rs.next(), "one row");
                }
            }
            try (PreparedStatement ps = c.prepareStatement("select ?::text is null, ?::timestamp")) {
                ps.setNull(1, Types.VARCHAR);
                ps.setTimestamp(2, Timestamp.valueOf("2020-02-29 12:00:00"));
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next() && rs.getBoolean(1), "null param");
                    check(rs.getTimestamp(2).equals(Timestamp.valueOf("2020-02-29 12:00:00")), "timestamp");
                }
            }
        }
    }

    static void reusedPrepared() throws Exception {
        // prepareThreshold=5 (default): the 5th execution switches to a named server statement;
        // also force binary transfer from the start with prepareThreshold=-1 on another connection.
        for (String threshold : new String[] {"5", "-1"}) {
            Properties p = new Properties();
            p.setProperty("prepareThreshold", threshold);
            try (Connection c = connect(p);
                 PreparedStatement ps = c.prepareStatement("select ?::int * 2, ?::text, now()")) {
                for (int i = 0; i < 12; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "v" + i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next() && rs.getInt(1) == i * 2 && rs.getString(2).equals("v" + i), "reuse " + i);
                        check(rs.getTimestamp(3) != null, "now");
                    }
                }
                try (PreparedStatement up = c.prepareStatement("update " + T + " set name = ? where id = ?")) {
                    for (int i = 0; i < 8; i++) {
                        up.setString(1, "n" + i);
                        up.setInt(2, 1);
                        check(up.executeUpdate() == 1, "update count");
                    }
                }
            }
        }
    }

    static void batches() throws Exception {
        for (String rewrite : new String[] {"false", "true"}) {
            Properties p = new Properties();
            p.setProperty("reWriteBatchedInserts", rewrite);
            int base = rewrite.equals("true") ? 2000 : 1000;
            try (Connection c = connect(p)) {
                c.setAutoCommit(false);
                try (PreparedStatement ps = c.prepareStatement("insert into " + T + " (id, name, amount) values (?, ?, ?)")) {
                    for (int i = 0; i < 300; i++) {
                        ps.setInt(1, base + i);
                        ps.setString(2, "batch " + i);
                        ps.setBigDecimal(3, new BigDecimal(i).movePointLeft(2));
                        ps.addBatch();
                    }
                    int[] counts = ps.executeBatch();
                    int total = 0;
                    for (int n : counts) total += (n == Statement.SUCCESS_NO_INFO ? 1 : n);
                    check(total == 300, "batch total " + total + " rewrite=" + rewrite);
                }
                c.commit();
                try (Statement s = c.createStatement();
                     ResultSet rs = s.executeQuery("select count(*), sum(amount) from " + T + " where id between " + base + " and " + (base + 299))) {
                    check(rs.next() && rs.getInt(1) == 300, "batch rows rewrite=" + rewrite);
                    check(rs.getBigDecimal(2).compareTo(new BigDecimal("448.50")) == 0, "sum " + rs.getBigDecimal(2));
                }
                // a batch with a failing row: BatchUpdateException, then rollback
                try (PreparedStatement ps = c.prepareStatement("insert into " + T + " (id, name) values (?, ?)")) {
                    for (int id : new int[] {base + 500, base + 501, base}) {
                        ps.setInt(1, id);
                        ps.setString(2, "dup?");
                        ps.addBatch();
                    }
                    try {
                        ps.executeBatch();
                        throw new AssertionError("batch with a duplicate succeeded");
                    } catch (BatchUpdateException e) {
                        check("23505".equals(e.getSQLState()) || "23505".equals(e.getNextException() == null ? null : e.getNextException().getSQLState()),
                              "batch error state " + e.getSQLState());
                    }
                }
                c.rollback();
                c.commit();
            }
        }
    }

    static void metadata() throws Exception {
        try (Connection c = connect(null)) {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductVersion().startsWith("15"), "version " + md.getDatabaseProductVersion());
            boolean found = false;
            try (ResultSet rs = md.getTables(null, "public", "compat_%", new String[] {"TABLE"})) {
                while (rs.next()) found |= rs.getString("TABLE_NAME").equals(T);
            }
            check(found, "getTables");
            List<String> cols = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", T, null)) {
                while (rs.next()) cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
            }
            check(cols.equals(Arrays.asList("id:int4", "name:text", "data:bytea", "amount:numeric", "ts:timestamptz", "js:jsonb", "arr:_int4")), "getColumns " + cols);
            try (ResultSet rs = md.getPrimaryKeys(null, "public", T)) {
                check(rs.next() && rs.getString("COLUMN_NAME").equals("id"), "getPrimaryKeys");
            }
            try (ResultSet rs = md.getIndexInfo(null, "public", T, false, false)) {
                check(rs.next(), "getIndexInfo");
            }
            try (ResultSet rs = md.getSchemas()) {
                check(rs.next(), "getSchemas");
            }
            try (ResultSet rs = md.getTypeInfo()) {
                check(rs.next(), "getTypeInfo");
            }
            try (PreparedStatement ps = c.prepareStatement("select id, name from " + T + " where id = ?")) {
                ResultSetMetaData rmd = ps.getMetaData();
                check(rmd.getColumnCount() == 2 && rmd.getColumnName(2).equals("name"), "ResultSetMetaData");
                ParameterMetaData pmd = ps.getParameterMetaData();
                check(pmd.getParameterCount() == 1, "ParameterMetaData");
            }
        }
    }

    static void fetchSize() throws Exception {
        try (Connection c = connect(null)) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("select g, repeat('x', 100) from generate_series(1, ?) g")) {
                ps.setFetchSize(50);
                ps.setInt(1, 1234);
                int n = 0;
                long sum = 0;
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        n++;
                        sum += rs.getInt(1);
                    }
                }
                check(n == 1234 && sum == 1234L * 1235 / 2, "fetch size rows " + n);
            }
            // two interleaved portals
            try (Statement a = c.createStatement(); Statement b = c.createStatement()) {
                a.setFetchSize(10);
                b.setFetchSize(7);
                try (ResultSet ra = a.executeQuery("select generate_series(1, 100)");
                     ResultSet rb = b.executeQuery("select generate_series(101, 200)")) {
                    int na = 0, nb = 0;
                    while (true) {
                        boolean ha = ra.next(), hb = rb.next();
                        if (!ha && !hb) break;
                        if (ha) check(ra.getInt(1) == ++na, "portal a");
                        if (hb) check(rb.getInt(1) == 100 + ++nb, "portal b");
                    }
                    check(na == 100 && nb == 100, "interleaved");
                }
            }
            c.commit();
        }
    }

    static void transactions() throws Exception {
        try (Connection c = connect(null)) {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.executeUpdate("insert into " + T + " (id, name) values (5000, 'x')");
                Savepoint sp = c.setSavepoint();
                try {
                    s.executeQuery("select 1/0");
                    throw new AssertionError("no error");
                } catch (SQLException e) {
                    check("22012".equals(e.getSQLState()), "state " + e.getSQLState());
                }
                c.rollback(sp);
                s.executeUpdate("insert into " + T + " (id, name) values (5001, 'y')");
                c.commit();
                try (ResultSet rs = s.executeQuery("select count(*) from " + T + " where id in (5000, 5001)")) {
                    check(rs.next() && rs.getInt(1) == 2, "savepoint rollback kept the rest");
                }
                s.executeUpdate("insert into " + T + " (id, name) values (5002, 'z')");
                c.rollback();
                try (ResultSet rs = s.executeQuery("select count(*) from " + T + " where id = 5002")) {
                    check(rs.next() && rs.getInt(1) == 0, "rollback");
                }
                c.commit();
            }
        }
    }

    static void cancelAndTimeout() throws Exception {
        try (Connection c = connect(null); Statement s = c.createStatement()) {
            s.setQueryTimeout(1);
            long start = System.nanoTime();
            try {
                s.executeQuery("select pg_sleep(10)");
                throw new AssertionError("no timeout");
            } catch (SQLException e) {
                check("57014".equals(e.getSQLState()), "state " + e.getSQLState());
            }
            check(System.nanoTime() - start < 5_000_000_000L, "cancel took too long");
            s.setQueryTimeout(0);
            try (ResultSet rs = s.executeQuery("select 1")) {
                check(rs.next() && rs.getInt(1) == 1, "usable after cancel");
            }
        }
    }

    static void wrongPassword() throws Exception {
        Properties p = new Properties();
        p.setProperty("password", "wrong");
        try (Connection c = connect(p)) {
            throw new AssertionError("connected with a wrong password");
        } catch (SQLException e) {
            check("28P01".equals(e.getSQLState()), "state " + e.getSQLState() + " " + e.getMessage());
        }
    }

    public static void main(String[] args) throws Exception {
        url = args[0];
        user = args[1];
        password = args[2];
        LinkedHashMap<String, Check> checks = new LinkedHashMap<>();
        checks.put("types (bytea, numeric, timestamptz, jsonb, array, null)", JdbcTest::types);
        checks.put("PreparedStatement reused past prepareThreshold", JdbcTest::reusedPrepared);
        checks.put("batch inserts, reWriteBatchedInserts off and on", JdbcTest::batches);
        checks.put("DatabaseMetaData", JdbcTest::metadata);
        checks.put("setFetchSize with autocommit off (portal suspension)", JdbcTest::fetchSize);
        checks.put("transactions and savepoints", JdbcTest::transactions);
        checks.put("setQueryTimeout cancels", JdbcTest::cancelAndTimeout);
        checks.put("wrong password", JdbcTest::wrongPassword);
        String only = System.getenv("COMPAT_ONLY");
        int failed = 0, ran = 0;
        for (Map.Entry<String, Check> e : checks.entrySet()) {
            if (only != null && !only.isEmpty() && !e.getKey().contains(only)) continue;
            ran++;
            try {
                e.getValue().run();
                System.out.println("  ok   jdbc: " + e.getKey());
            } catch (Throwable t) {
                failed++;
                System.out.println("  FAIL jdbc: " + e.getKey() + ": " + t);
            }
        }
        System.out.println("jdbc: " + (ran - failed) + " passed, " + failed + " failed");
        System.exit(failed > 0 || ran == 0 ? 1 : 0);
    }
}

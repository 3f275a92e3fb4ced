// Real work through pgjdbc (Debian's libpostgresql-jdbc-java): run against PostgreSQL or the
// tandem proxy.
//
// Usage: java -cp /usr/share/java/postgresql.jar:DIR JdbcCheck HOST PORT DBNAME USER
// The password comes from the file named by PGPASSFILE (pgjdbc >= 42.3 reads it).
// Prints one line per step; on any failure prints `JdbcCheck: FAILED at <step>: <error>` and
// exits 1.

import java.io.StringReader;
import java.io.StringWriter;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;

public class JdbcCheck {
    static String step = "start";
    static long stepStart;

    static void step(String name) {
        done();
        step = name;
        stepStart = System.nanoTime();
    }

    static void done() {
        if (!step.equals("start")) {
            System.out.printf("ok   %s (%.2fs)%n", step, (System.nanoTime() - stepStart) / 1e9);
        }
    }

    static void check(boolean cond, String what) {
        if (!cond) {
            throw new AssertionError(what);
        }
    }

    static long one(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            check(rs.next(), "no row for " + sql);
            return rs.getLong(1);
        }
    }

    public static void main(String[] args) {
        try {
            run(args);
            done();
            System.out.println("JdbcCheck: all steps passed");
        } catch (Throwable e) {
            e.printStackTrace();
            System.err.println("JdbcCheck: FAILED at '" + step + "': " + e);
            System.exit(1);
        }
    }

    static void run(String[] args) throws Exception {
        check(args.length == 4, "usage: JdbcCheck HOST PORT DBNAME USER");
        check(System.getenv("PGPASSFILE") != null, "PGPASSFILE is not set");
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[2];
        Properties props = new Properties();
        props.setProperty("user", args[3]);
        props.setProperty("ApplicationName", "JdbcCheck");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "60");

        step("connect with SCRAM (password from PGPASSFILE)");
        Connection c = DriverManager.getConnection(url, props);
        check(c.isValid(5), "connection not valid");
        check(one(c, "select current_setting('server_version_num')::int") >= 150000, "server version");
        check(!c.getMetaData().getDriverVersion().isEmpty(), "driver version");
        System.out.println("     driver " + c.getMetaData().getDriverVersion());

        step("metadata");
        try (Statement st = c.createStatement()) {
            st.execute("create table items (id int primary key, name text not null, qty int not null default 0, price numeric(10,2))");
        }
        DatabaseMetaData md = c.getMetaData();
        check(md.getDatabaseProductName().equals("PostgreSQL"), "product " + md.getDatabaseProductName());
        check(md.getDatabaseMajorVersion() >= 15, "major version " + md.getDatabaseMajorVersion());
        try (ResultSet rs = md.getTables(null, "public", "items", new String[] {"TABLE"})) {
            check(rs.next() && rs.getString("TABLE_NAME").equals("items"), "getTables finds items");
        }
        List<String> cols = new ArrayList<>();
        try (ResultSet rs = md.getColumns(null, "public", "items", null)) {
            while (rs.next()) {
                cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
            }
        }
        check(cols.toString().equals("[id:int4, name:text, qty:int4, price:numeric]"), "columns " + cols);
        try (ResultSet rs = md.getPrimaryKeys(null, "public", "items")) {
            check(rs.next() && rs.getString("COLUMN_NAME").equals("id"), "primary key");
        }

        step("PreparedStatement reused past prepareThreshold (server-prepared)");
        int threshold = c.unwrap(PGConnection.class).getPrepareThreshold();
        check(threshold == 5, "prepareThreshold " + threshold);
        try (PreparedStatement ps = c.prepareStatement("select ?::int * 2, ?::text || 'x'")) {
            for (int i = 0; i < 200; i++) {
                ps.setInt(1, i);
                ps.setString(2, "v" + i);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "no row");
                    check(rs.getInt(1) == i * 2 && rs.getString(2).equals("v" + i + "x"), "result for " + i);
                    check(!rs.next(), "extra row");
                }
            }
            check(ps.unwrap(PGStatement.class).isUseServerPrepare(), "not server-prepared");
        }
        long prepared = one(c, "select count(*) from pg_prepared_statements where statement like '%* 2, $2::text%'");
        check(prepared == 1, "named server statements: " + prepared);

        step("batch inserts (1000 rows)");
        c.setAutoCommit(false);
        try (PreparedStatement ps = c.prepareStatement("insert into items (id, name, qty, price) values (?, ?, ?, ?)")) {
            for (int i = 1; i <= 1000; i++) {
                ps.setInt(1, i);
                ps.setString(2, "item " + i + " ü'\"");
                ps.setInt(3, i % 9);
                ps.setBigDecimal(4, new java.math.BigDecimal(i + ".25"));
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            check(counts.length == 1000, "batch results " + counts.length);
            for (int n : counts) {
                check(n == 1 || n == Statement.SUCCESS_NO_INFO, "batch count " + n);
            }
        }
        c.commit();
        long expectedQty = 0;
        for (int i = 1; i <= 1000; i++) {
            expectedQty += i % 9;
        }
        check(one(c, "select count(*) from items") == 1000, "count after batch");
        check(one(c, "select sum(qty) from items") == expectedQty, "sum after batch");
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("select name, price from items where id = 7")) {
            check(rs.next() && rs.getString(1).equals("item 7 ü'\"") && rs.getBigDecimal(2).toString().equals("7.25"), "row 7");
        }
        c.commit();

        step("transaction rollback");
        try (Statement st = c.createStatement()) {
            st.executeUpdate("delete from items where id > 500");
            check(one(c, "select count(*) from items") == 500, "delete visible inside");
            c.rollback();
            check(one(c, "select count(*) from items") == 1000, "rollback did not restore rows");
            java.sql.Savepoint sp = c.setSavepoint();
            st.executeUpdate("update items set qty = 0");
            c.rollback(sp);
            st.executeUpdate("update items set qty = qty + 1 where id = 1");
            c.commit();
            check(one(c, "select sum(qty) from items") == expectedQty + 1, "savepoint rollback");
        }
        c.commit();
        c.setAutoCommit(true);

        step("CopyManager in (20000 rows) and out");
        CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
        try (Statement st = c.createStatement()) {
            st.execute("create table copied (id int primary key, body text)");
        }
        StringBuilder in = new StringBuilder();
        for (int i = 0; i < 20000; i++) {
            in.append(i).append(",\"body ").append(i).append(" with \"\"quotes\"\", commas\nand a newline\"\n");
        }
        long copiedIn = cm.copyIn("copy copied from stdin (format csv)", new StringReader(in.toString()));
        check(copiedIn == 20000, "copyIn count " + copiedIn);
        StringWriter out = new StringWriter();
        long copiedOut = cm.copyOut("copy (select * from copied order by id) to stdout (format csv)", out);
        check(copiedOut == 20000, "copyOut count " + copiedOut);
        check(out.toString().equals(in.toString()), "copyOut differs from copyIn");
        try {
            cm.copyIn("copy copied from stdin (format csv)", new StringReader("1,duplicate\n"));
            throw new AssertionError("duplicate copy accepted");
        } catch (SQLException e) {
            check("23505".equals(e.getSQLState()), "copy error state " + e.getSQLState());
        }
        check(one(c, "select count(*) from copied") == 20000, "after failed copy");

        step("setQueryTimeout cancels pg_sleep on the server");
        try (Statement st = c.createStatement()) {
            st.setQueryTimeout(1);
            long t0 = System.nanoTime();
            try {
                st.execute("select pg_sleep(30) /* jdbc_cancel_me */");
                throw new AssertionError("pg_sleep(30) returned");
            } catch (SQLException e) {
                check("57014".equals(e.getSQLState()), "cancel state " + e.getSQLState() + ": " + e.getMessage());
            }
            double secs = (System.nanoTime() - t0) / 1e9;
            check(secs < 5, "cancel took " + secs + " s");
        }
        check(one(c, "select 5") == 5, "connection unusable after cancel");
        long left = -1;
        for (int i = 0; i < 50 && left != 0; i++) {
            left = one(c, "select count(*) from pg_stat_activity where state = 'active' and query like '%jdbc_cancel_me%' and pid <> pg_backend_pid()");
            if (left != 0) {
                Thread.sleep(100);
            }
        }
        check(left == 0, left + " backend(s) still run the cancelled pg_sleep");

        step("error then recovery");
        try (Statement st = c.createStatement()) {
            st.executeUpdate("insert into items (id, name) values (1, 'dup')");
            throw new AssertionError("duplicate insert succeeded");
        } catch (SQLException e) {
            check("23505".equals(e.getSQLState()), "state " + e.getSQLState());
        }
        check(one(c, "select count(*) from items") == 1000, "query after error");

        step("close");
        c.close();
        check(c.isClosed(), "not closed");
    }
}

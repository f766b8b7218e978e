//! GPT-2-style byte-level BPE: trained with HuggingFace `tokenizers`, applied
//! fast with tiktoken's algorithm.
//!
//! Settings match GPT-2: ByteLevel pre-tokenisation with the GPT-2 regex, no
//! prefix space, the full 256-byte initial alphabet (so every byte sequence
//! encodes, and `decode(encode(x)) == x`), ByteLevel decoding, and special
//! tokens (an end-of-text token) placed first in the vocabulary. The result is
//! a standard `tokenizer.json` that Python's `tokenizers.Tokenizer.from_file`
//! loads.
//!
//! [`Encoder`] encodes with tiktoken's BPE (its merge step from `tiktoken-rs`)
//! after GPT-2's pre-tokenisation written as a scanner: several times faster
//! than `tokenizers` on one thread (benches/RESULTS.md) and, for a vocabulary
//! that `tokenizers` trained, the same ids — token ids follow merge order, so
//! "merge the pair whose result ranks lowest" (tiktoken) and "apply the
//! earliest merge" (`tokenizers`) coincide, and both split text with GPT-2's
//! regex. Tests check the agreement on every document of the corpus. One
//! deliberate difference: text that spells a special token (`<|endoftext|>`)
//! is encoded as ordinary text, never as the special token.

use std::collections::HashMap;
use std::path::Path;

use rustc_hash::FxHashMap;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Tokenizer,
    TokenizerBuilder,
};

/// What to train.
#[derive(Clone, Debug)]
pub struct BpeSpec {
    /// Exact size of the vocabulary, special tokens included.
    pub vocab_size: usize,
    /// Special tokens, in id order from 0.
    pub special_tokens: Vec<String>,
    /// Merges need a pair to occur at least this often.
    pub min_frequency: u64,
}

/// Trains a tokenizer on `docs`. Fails if the corpus is too small to reach
/// exactly `vocab_size` entries.
pub fn train<I>(spec: &BpeSpec, docs: I) -> Result<Tokenizer, String>
where
    I: Iterator<Item = String> + Send,
{
    let specials: Vec<AddedToken> = spec.special_tokens.iter().map(|t| AddedToken::from(t.clone(), true)).collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(spec.vocab_size)
        .min_frequency(spec.min_frequency)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer: Tokenizer = TokenizerBuilder::<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default().into())
    .with_normalizer(None)
    .with_pre_tokenizer(Some(byte_level.into()))
    .with_post_processor(Some(byte_level.into()))
    .with_decoder(Some(byte_level.into()))
    .build()
    .map_err(|e| e.to_string())?
    .into();
    tokenizer.train(&mut trainer, docs).map_err(|e| format!("BPE training failed: {e}"))?;
    let got = tokenizer.get_vocab_size(true);
    if got != spec.vocab_size {
        return Err(format!("the corpus yields only {got} vocabulary entries, not the {} asked for: use more text or a smaller vocab_size", spec.vocab_size));
    }
    Ok(tokenizer)
}

/// Loads a `tokenizer.json`.
pub fn load(path: &Path) -> Result<Tokenizer, String> {
    Tokenizer::from_file(path).map_err(|e| format!("{}: not a valid tokenizer.json: {e}", path.display()))
}

/// GPT-2's byte ↔ printable-character table, inverted: the byte each
/// character of a ByteLevel vocabulary entry stands for.
fn byte_level_table() -> HashMap<char, u8> {
    let mut bytes: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars = bytes.clone();
    let mut extra = 0;
    for b in 0..256 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    bytes.into_iter().zip(chars).filter_map(|(b, c)| Some((char::from_u32(c)?, b as u8))).collect()
}

/// The fast encoder of a trained tokenizer (see the module docs).
pub struct Encoder {
    ranks: FxHashMap<Vec<u8>, u32>,
}

impl Encoder {
    /// Builds tiktoken's rank table from the tokenizer's byte-level vocabulary.
    pub fn new(tokenizer: &Tokenizer) -> Result<Self, String> {
        let table = byte_level_table();
        let mut ranks: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
        let specials: Vec<String> = tokenizer.get_added_tokens_decoder().values().map(|t| t.content.clone()).collect();
        for (token, id) in tokenizer.get_vocab(false) {
            if specials.contains(&token) {
                continue;
            }
            let bytes: Option<Vec<u8>> = token.chars().map(|c| table.get(&c).copied()).collect();
            let bytes = bytes.ok_or_else(|| format!("vocabulary entry {token:?} is not byte-level"))?;
            if ranks.insert(bytes, id).is_some() {
                return Err(format!("two vocabulary entries spell the bytes of {token:?}"));
            }
        }
        Self::from_ranks(ranks)
    }

    /// An encoder for tiktoken-style mergeable ranks (bytes → id), which
    /// must hold all 256 single bytes.
    pub fn from_ranks(ranks: FxHashMap<Vec<u8>, u32>) -> Result<Self, String> {
        if (0..=255u8).any(|b| !ranks.contains_key([b].as_slice())) {
            return Err("the vocabulary lacks some of the 256 single bytes".into());
        }
        Ok(Encoder { ranks })
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3);
        for piece in Pieces::new(text) {
            let bytes = piece.as_bytes();
            match self.ranks.get(bytes) {
                Some(&rank) => out.push(rank),
                // Longer than one byte (every byte has a rank): merge by rank.
                None => out
                    .extend(tiktoken_rs::byte_pair_split(bytes, &self.ranks).into_iter().map(|part| self.ranks[part])),
            }
        }
        out
    }
}

/// Character classes of GPT-2's pre-tokenisation regex.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `\p{L}`
    Letter,
    /// `\p{N}`
    Number,
    /// `\s` (Unicode White_Space)
    Space,
    /// everything else
    Other,
}

fn class(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' => Class::Space,
            _ => Class::Other,
        };
    }
    if c.is_whitespace() {
        return Class::Space;
    }
    match c.general_category_group() {
        GeneralCategoryGroup::Letter => Class::Letter,
        GeneralCategoryGroup::Number => Class::Number,
        _ => Class::Other,
    }
}

/// GPT-2's pre-tokenisation,
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
/// written out as a scanner: the regex (fancy-regex in tiktoken) was most of
/// the encoding time. Alternatives are tried in order at each position, as
/// the backtracking regex does; tests compare it with `tokenizers` on the
/// whole corpus and on random text.
struct Pieces<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Pieces<'a> {
    fn new(text: &'a str) -> Self {
        Pieces { text, pos: 0 }
    }

    /// End of the run of `class` characters starting at byte `from`.
    fn run_end(&self, from: usize, wanted: Class) -> usize {
        self.text[from..].char_indices().find(|&(_, c)| class(c) != wanted).map_or(self.text.len(), |(i, _)| from + i)
    }
}

const CONTRACTIONS: [&str; 7] = ["s", "t", "re", "ve", "m", "ll", "d"];

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let rest = &self.text[start..];
        let mut chars = rest.chars();
        let first = chars.next()?;
        let end = 'matched: {
            if first == '\'' {
                if let Some(c) = CONTRACTIONS.iter().find(|c| rest[1..].starts_with(**c)) {
                    break 'matched start + 1 + c.len();
                }
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run.
            let (body, body_class) = match (first, chars.next()) {
                (' ', Some(second)) if class(second) != Class::Space => (start + 1, class(second)),
                _ => (start, class(first)),
            };
            if body_class != Class::Space {
                break 'matched self.run_end(body, body_class);
            }
            // `\s+(?!\S)`, else `\s+`: a whitespace run followed by non-space
            // gives up its last character (if it has more than one).
            let run_end = self.run_end(start, Class::Space);
            if run_end == self.text.len() {
                break 'matched run_end;
            }
            let last = self.text[..run_end].chars().next_back().map_or(0, char::len_utf8);
            if run_end - last > start {
                run_end - last
            } else {
                run_end
            }
        };
        self.pos = end;
        Some(&self.text[start..end])
    }
}

/// Token ids of `text` through `tokenizers` itself: the reference (and
/// Python-compatible) path that [`Encoder`] is tested against.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, String> {
    tokenizer.encode_fast(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| e.to_string())
}

/// Text of `ids` (special tokens kept).
pub fn decode(tokenizer: &Tokenizer, ids: &[u32]) -> Result<String, String> {
    tokenizer.decode(ids, false).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<String> {
        let base =
            "Le petit chat dort au soleil. « Où est-il ? » demanda l’enfant. L’été, les élèves étudient à l’école; \
                    les garçons et les filles mangent des crêpes, boivent du café et lisent des œuvres françaises.";
        (0..50).map(|i| format!("{base} Paragraphe numéro {i}.")).collect()
    }

    fn spec(vocab_size: usize) -> BpeSpec {
        BpeSpec { vocab_size, special_tokens: vec!["<|endoftext|>".into()], min_frequency: 0 }
    }

    #[test]
    fn exact_vocab_size_and_special_token_first() {
        let tok = train(&spec(300), sample().into_iter()).unwrap();
        assert_eq!(tok.get_vocab_size(true), 300);
        assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));
    }

    #[test]
    fn too_small_a_corpus_is_a_clear_error() {
        let err = train(&spec(50_000), sample().into_iter()).unwrap_err();
        assert!(err.contains("yields only"), "{err}");
    }

    #[test]
    fn round_trips_french_and_random_bytes() {
        let tok = train(&spec(300), sample().into_iter()).unwrap();
        for text in sample().iter().map(String::as_str).chain(["«  »\u{a0}’ œuvre\tÉté\n\n中文 🙂", ""]) {
            assert_eq!(decode(&tok, &encode(&tok, text).unwrap()).unwrap(), text);
        }
        let mut state = 0x9e3779b97f4a7c15u64;
        for len in [1usize, 7, 100, 1000] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            // Arbitrary bytes as the (lossless) text a document can hold.
            let text = String::from_utf8_lossy(&bytes).into_owned();
            assert_eq!(decode(&tok, &encode(&tok, &text).unwrap()).unwrap(), text);
        }
    }

    #[test]
    fn fast_encoder_agrees_with_tokenizers() {
        let tok = train(&spec(400), sample().into_iter()).unwrap();
        let fast = Encoder::new(&tok).unwrap();
        for text in
            sample().iter().map(String::as_str).chain(["«  »\u{a0}’ œuvre\tÉté\n\n 中文 🙂  x", "", "   ", "l'été's"])
        {
            assert_eq!(fast.encode(text), encode(&tok, text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn pre_tokenisation_matches_the_gpt2_regex() {
        fn pieces(t: &str) -> Vec<&str> {
            Pieces::new(t).collect()
        }
        assert_eq!(
            pieces("Hello world's  end!!\n\n  x 12ab"),
            ["Hello", " world", "'s", " ", " end", "!!", "\n\n ", " x", " 12", "ab"]
        );
        assert_eq!(pieces("a  "), ["a", "  "]);
        assert_eq!(pieces("l'été « ok »"), ["l", "'", "été", " «", " ok", " »"]);
        assert_eq!(pieces("''s !'s"), ["''", "s", " !'", "s"]);
    }

    #[test]
    fn fast_encoder_agrees_on_random_text() {
        let tok = train(&spec(400), sample().into_iter()).unwrap();
        let fast = Encoder::new(&tok).unwrap();
        let alphabet: Vec<char> =
            "aé É'’sdtlmrev 0123456789\n\t\u{a0}\u{2009}.,;:!?«»-—()🙂中文Ⅻ²\u{301}_".chars().collect();
        let mut state = 0x2545F4914F6CDD1Du64;
        for _ in 0..2000 {
            let len = (state % 40) as usize;
            let text: String = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            assert_eq!(fast.encode(&text), encode(&tok, &text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn training_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.json", "b.json"] {
            train(&spec(300), sample().into_iter()).unwrap().save(dir.path().join(name), false).unwrap();
        }
        assert_eq!(
            std::fs::read(dir.path().join("a.json")).unwrap(),
            std::fs::read(dir.path().join("b.json")).unwrap()
        );
    }
}

//! Every tokenizer a `tokenizer` artifact can hold, behind one encoder: one
//! this project trained, any Hugging Face `tokenizer.json`, or a tiktoken
//! encoding by name.
//!
//! Encoding speed decides which engine runs. Byte-level BPE with GPT-2's
//! pre-tokenisation whose token ids follow its merges (what `tokenizer`
//! trains, and GPT-2's own `tokenizer.json`) goes through the fast
//! [`bpe::Encoder`] (~40 MB/s a thread); so do tiktoken's `gpt2`/`r50k_base`
//! and `p50k_base`, which split text with the same regex. `cl100k_base` and
//! `o200k_base` use tiktoken's own engine (their regexes differ), and any
//! other `tokenizer.json` the `tokenizers` crate (general, ~1.4 MB/s a thread).

use std::path::Path;

use rustc_hash::FxHashMap;
use tokenizers::Tokenizer;

use super::bpe;

/// The artifact file naming a tiktoken encoding (`{"encoding": "gpt2"}`).
pub const TIKTOKEN_FILE: &str = "tiktoken.json";
/// The artifact file of a Hugging Face tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The tiktoken encodings this build carries (their tables are compiled in).
pub const TIKTOKEN_NAMES: [&str; 5] = ["gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base"];

/// `tiktoken.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TiktokenSpec {
    /// One of [`TIKTOKEN_NAMES`].
    pub encoding: String,
}

enum Table {
    Hf(Tokenizer),
    Tiktoken { core: Box<tiktoken_rs::CoreBPE>, specials: FxHashMap<String, u32>, vocab_size: usize },
}

/// A loaded tokenizer that encodes text and decodes ids.
pub struct TextEncoder {
    table: Table,
    /// The fast engine, where it is exact; else the table's own.
    fast: Option<bpe::Encoder>,
    description: String,
}

/// tiktoken's table and engine for an encoding name.
fn tiktoken_core(name: &str) -> Result<tiktoken_rs::CoreBPE, String> {
    let core = match name {
        "gpt2" | "r50k_base" => tiktoken_rs::r50k_base(),
        "p50k_base" => tiktoken_rs::p50k_base(),
        "cl100k_base" => tiktoken_rs::cl100k_base(),
        "o200k_base" => tiktoken_rs::o200k_base(),
        other => {
            return Err(format!("unknown tiktoken encoding `{other}` (known: {})", TIKTOKEN_NAMES.join(", ")));
        }
    };
    core.map_err(|e| format!("tiktoken encoding `{name}`: {e}"))
}

/// Whether `tokenizer` is byte-level BPE that [`bpe::Encoder`] encodes
/// exactly as `tokenizers` does: no normaliser, GPT-2's ByteLevel
/// pre-tokenisation without prefix space, and ids that rise with merge order.
fn fast_compatible(tokenizer: &Tokenizer) -> bool {
    let Ok(json) = tokenizer.to_string(false) else { return false };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) else { return false };
    let pre = &v["pre_tokenizer"];
    let byte_level = pre["type"] == "ByteLevel" && pre["add_prefix_space"] == false && pre["use_regex"] == true;
    let model = &v["model"];
    if !(v["normalizer"].is_null() && byte_level && model["type"] == "BPE" && model["dropout"].is_null()) {
        return false;
    }
    let (Some(vocab), Some(merges)) = (model["vocab"].as_object(), model["merges"].as_array()) else { return false };
    let mut last = -1i64;
    for merge in merges {
        let (a, b) = match merge {
            serde_json::Value::String(s) => match s.split_once(' ') {
                Some(pair) => pair,
                None => return false,
            },
            serde_json::Value::Array(pair) if pair.len() == 2 => match (pair[0].as_str(), pair[1].as_str()) {
                (Some(a), Some(b)) => (a, b),
                _ => return false,
            },
            _ => return false,
        };
        let Some(id) = vocab.get(&format!("{a}{b}")).and_then(serde_json::Value::as_i64) else { return false };
        if id <= last {
            return false;
        }
        last = id;
    }
    true
}

impl TextEncoder {
    /// A Hugging Face tokenizer, with the fast engine where it is exact.
    pub fn from_tokenizer(tokenizer: Tokenizer) -> Self {
        let fast = if fast_compatible(&tokenizer) { bpe::Encoder::new(&tokenizer).ok() } else { None };
        let description = match fast {
            Some(_) => "byte-level BPE (fast encoder)",
            None => "tokenizer.json (encoded by the tokenizers crate)",
        };
        TextEncoder { table: Table::Hf(tokenizer), fast, description: description.into() }
    }

    /// A tiktoken encoding by name.
    pub fn tiktoken(name: &str) -> Result<Self, String> {
        let core = tiktoken_core(name)?;
        let special_names: Vec<String> = core.special_tokens().into_iter().map(String::from).collect();
        let mut specials = FxHashMap::default();
        for special in special_names {
            if let [id] = core.encode_with_special_tokens(&special)[..] {
                specials.insert(special, id);
            }
        }
        let first_special = specials.values().copied().min().unwrap_or(u32::MAX);
        let mut ranks: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
        // The ordinary tokens are the ranks below the first special token.
        for rank in 0..first_special.min(1 << 22) {
            if let Ok(bytes) = core.decode_bytes(&[rank]) {
                ranks.insert(bytes, rank);
            }
        }
        let vocab_size = ranks.len().max(specials.values().map(|&id| id as usize + 1).max().unwrap_or(0));
        let gpt2_regex = matches!(name, "gpt2" | "r50k_base" | "p50k_base");
        let (fast, description) = if gpt2_regex {
            (Some(bpe::Encoder::from_ranks(ranks)?), format!("tiktoken `{name}` (fast encoder)"))
        } else {
            (None, format!("tiktoken `{name}`"))
        };
        Ok(TextEncoder { table: Table::Tiktoken { core: Box::new(core), specials, vocab_size }, fast, description })
    }

    /// Loads the tokenizer of a `tokenizer` artifact directory.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let tiktoken = dir.join(TIKTOKEN_FILE);
        if tiktoken.exists() {
            let bytes = std::fs::read(&tiktoken).map_err(|e| format!("{}: {e}", tiktoken.display()))?;
            let spec: TiktokenSpec =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", tiktoken.display()))?;
            return Self::tiktoken(&spec.encoding);
        }
        Ok(Self::from_tokenizer(bpe::load(&dir.join(TOKENIZER_FILE))?))
    }

    /// What encodes, for logs and summaries.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Embedding rows a model needs: one past the largest id.
    pub fn vocab_size(&self) -> usize {
        match &self.table {
            Table::Hf(t) => t.get_vocab_size(true),
            Table::Tiktoken { vocab_size, .. } => *vocab_size,
        }
    }

    /// The id of a special token (or any token, for a `tokenizer.json`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.table {
            Table::Hf(t) => t.token_to_id(token),
            Table::Tiktoken { specials, .. } => specials.get(token).copied(),
        }
    }

    /// Token ids of `text`; text that spells a special token is ordinary text.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match (&self.fast, &self.table) {
            (Some(f), _) => f.encode(text),
            (None, Table::Tiktoken { core, .. }) => core.encode_ordinary(text),
            (None, Table::Hf(t)) => t.encode_fast(text, false).map(|e| e.get_ids().to_vec()).unwrap_or_default(),
        }
    }

    /// The text of `ids` (special tokens kept; invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        match &self.table {
            Table::Hf(t) => bpe::decode(t, ids),
            Table::Tiktoken { core, .. } => core
                .decode_bytes(ids)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| format!("token {} is not in the vocabulary", e.token)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_by_name_has_its_vocabulary_and_known_ids() {
        let gpt2 = TextEncoder::tiktoken("gpt2").unwrap();
        assert_eq!(gpt2.vocab_size(), 50_257);
        assert_eq!(gpt2.token_id("<|endoftext|>"), Some(50_256));
        // "Hello world" is [15496, 995] in GPT-2, as everywhere it is documented.
        assert_eq!(gpt2.encode("Hello world"), [15496, 995]);
        let text = "L’été, « où » ? 中文 🙂\n\n  x";
        let core = tiktoken_rs::r50k_base().unwrap();
        assert_eq!(gpt2.encode(text), core.encode_ordinary(text), "fast encoder = tiktoken");
        assert_eq!(gpt2.decode(&gpt2.encode(text)).unwrap(), text);
        assert!(gpt2.description().contains("fast"));
    }

    #[test]
    fn wide_vocabularies() {
        let cl = TextEncoder::tiktoken("cl100k_base").unwrap();
        assert_eq!(cl.vocab_size(), 100_277);
        assert_eq!(cl.token_id("<|endoftext|>"), Some(100_257));
        assert_eq!(cl.encode("Hello world"), [9906, 1917]);
        let o = TextEncoder::tiktoken("o200k_base").unwrap();
        assert!(o.vocab_size() > 65_536);
        let err = TextEncoder::tiktoken("gpt5").err().unwrap();
        assert!(err.contains("known: gpt2"), "{err}");
    }
}

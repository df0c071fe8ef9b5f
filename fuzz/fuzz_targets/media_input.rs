//! A request's images and the prompt they are placed in (issue 29): checking any bytes as an
//! image (format sniffing, the size read from a PNG, GIF, BMP or JPEG header) never panics, and
//! tags put in messages whose text is hostile come out of any rendering as offsets that lie on
//! character boundaries of the prompt, in order, with the tags gone.
#![no_main]

use corral_server::media;
use corral_types::api::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = media::check(0, data);
    let text = String::from_utf8_lossy(data).into_owned();
    // One picture, which the checks accept, in a message of the fuzzed text.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
    let mut messages = vec![Message { images: Some(vec![png.into()]), ..Message::new("user", &text) }];
    let images = media::attach(&mut messages).expect("a valid PNG is accepted");
    // A "rendering" that repeats, cuts and wraps the content the way templates might.
    let rendered = format!("{t}<|x|>{t}", t = messages[0].content);
    let cut = rendered.char_indices().nth(rendered.chars().count() / 2).map_or(0, |(i, _)| i);
    for prompt in [rendered.as_str(), &rendered[..cut]] {
        let (plain, placed) = media::place(prompt, images.clone());
        let mut last = 0;
        for m in &placed {
            assert!(m.at >= last && plain.is_char_boundary(m.at), "{} in {:?}", m.at, plain);
            last = m.at;
        }
        assert!(placed.len() <= 1);
    }
});

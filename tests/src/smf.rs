//! Standard MIDI Files crafted byte by byte, for tests of the MIDI reader and of the tools that
//! read MIDI folders.

/// A MIDI variable-length quantity.
pub fn vlq(mut value: u32) -> Vec<u8> {
    let mut bytes = vec![(value & 0x7f) as u8];
    value >>= 7;
    while value > 0 {
        bytes.insert(0, 0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    bytes
}

/// An `MThd` chunk.
pub fn header(format: u16, tracks: u16, division: [u8; 2]) -> Vec<u8> {
    let mut bytes = b"MThd".to_vec();
    bytes.extend(6u32.to_be_bytes());
    bytes.extend(format.to_be_bytes());
    bytes.extend(tracks.to_be_bytes());
    bytes.extend(division);
    bytes
}

/// An `MTrk` chunk around `events` (which should end with an end-of-track event).
pub fn track(events: &[u8]) -> Vec<u8> {
    let mut bytes = b"MTrk".to_vec();
    bytes.extend((events.len() as u32).to_be_bytes());
    bytes.extend(events);
    bytes
}

pub const END_OF_TRACK: [u8; 4] = [0x00, 0xff, 0x2f, 0x00];

/// Track events from `(delta, bytes)` pairs, ended with end-of-track.
pub fn events(list: &[(u32, &[u8])]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (delta, event) in list {
        bytes.extend(vlq(*delta));
        bytes.extend(*event);
    }
    bytes.extend(END_OF_TRACK);
    bytes
}

/// A format-0 file, 480 ticks per quarter, with one track of `list`.
pub fn single_track(list: &[(u32, &[u8])]) -> Vec<u8> {
    let mut bytes = header(0, 1, 480u16.to_be_bytes());
    bytes.extend(track(&events(list)));
    bytes
}

pub fn note_on(pitch: u8) -> [u8; 3] {
    [0x90, pitch, 100]
}

pub fn note_off(pitch: u8) -> [u8; 3] {
    [0x80, pitch, 0]
}

/// One C major scale in eighth notes (240 ticks at 480 per quarter), a valid little tune.
pub fn scale() -> Vec<u8> {
    let mut list: Vec<(u32, Vec<u8>)> = Vec::new();
    for pitch in [60u8, 62, 64, 65, 67, 69, 71, 72] {
        list.push((0, note_on(pitch).to_vec()));
        list.push((240, note_off(pitch).to_vec()));
    }
    let borrowed: Vec<(u32, &[u8])> = list.iter().map(|(d, e)| (*d, e.as_slice())).collect();
    single_track(&borrowed)
}

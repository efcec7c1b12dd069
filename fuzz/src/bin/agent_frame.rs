//! Fuzz target: the agent protocol decoder. Bytes are read as a stream of
//! frames (`frame::read_frame`, the module's and CLI's reader) and each body
//! through the daemon's rules (`Request::decode`); whatever decodes must
//! re-encode to a frame that decodes to the same request.

use lanyard_proto::agent::{Request, Response};
use lanyard_proto::frame::{encode, read_frame};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let mut r = data;
        while let Ok(req) = read_frame::<Request, _>(&mut r) {
            let again = encode(&req);
            let back: Request = match read_frame(&mut again.as_slice()) {
                Ok(back) => back,
                Err(e) => panic!("a decoded request does not re-decode: {e}"),
            };
            assert_eq!(back, req);
        }
        let _ = read_frame::<Response, _>(&mut &data[..]);
    });
}

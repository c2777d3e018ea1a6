/**
 * Wire protocol of the rendezvous store (the TypeScript server and client,
 * and the C++ client inside the gloo shim, implement exactly this).
 *
 * Every message, both ways, is a frame: u32 little-endian payload length,
 * then the payload. A frame longer than MAX_FRAME is a protocol error: the
 * server logs it and closes that connection, and keeps serving the others.
 *
 * Request payload: u8 op, then fields. `bytes` = u32 LE length + raw bytes
 * (keys are UTF-8 bytes).
 *   AUTH  token:bytes                         -> OK | ERROR   (must come first when the server has a token)
 *   SET   key:bytes value:bytes               -> OK
 *   GET   key:bytes                           -> OK value:bytes | NOT_FOUND
 *   ADD   key:bytes delta:i64                 -> OK value:i64 (the new value; a missing key counts as 0,
 *                                                             stored as its decimal ASCII text)
 *   WAIT  count:u32 key:bytes*count timeout_ms:u32 -> OK | TIMEOUT  (OK once every key exists)
 *   DELETE key:bytes                          -> OK
 * Reply payload: u8 status, then the fields above; ERROR carries message:bytes.
 */
export const MAX_FRAME = 16 << 20;

export const enum StoreOp {
  AUTH = 0,
  SET = 1,
  GET = 2,
  ADD = 3,
  WAIT = 4,
  DELETE = 5,
}

export const enum StoreStatus {
  OK = 0,
  NOT_FOUND = 1,
  TIMEOUT = 2,
  ERROR = 3,
}

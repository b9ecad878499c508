// A minimal WebSocket client for load generation (RFC 6455, text frames, no extensions).
// Why not the `ws` client: a fan-out to 1,000 sockets delivers hundreds of thousands of frames
// a second, and the load generator must not be what limits the figure. This client only finds
// frame boundaries (and decodes a payload when asked), so one core keeps up with any server
// here. It is a load generator, not a general client: it trusts the server it talks to.
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';

const OP_TEXT = 0x1;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/**
 * Opens a WebSocket to `ws://host:port<path>` with extra request `headers`. Resolves once the
 * server answered 101; rejects with the status line otherwise. `onFrame(payload?)` runs for each
 * text frame: with the payload as a string when `decode` is true, without it otherwise.
 */
export function connectWebSocket({ host, port, path, headers = {}, decode = false, onFrame, onClose }) {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port });
    socket.setNoDelay(true);
    const key = randomBytes(16).toString('base64');
    let handshakeDone = false;
    let headerText = '';
    let leftover = null;
    let closed = false;

    const client = {
      socket,
      frames: 0,
      /** Sends one text frame (masked, as every client frame must be). */
      send(text) {
        socket.write(maskedFrame(OP_TEXT, Buffer.from(text)));
      },
      close() {
        if (closed) return;
        closed = true;
        socket.end(maskedFrame(OP_CLOSE, Buffer.from([0x03, 0xe8])));
        socket.destroySoon?.();
      },
      destroy() {
        closed = true;
        socket.destroy();
      },
    };

    const parse = (chunk) => {
      let buf = leftover === null ? chunk : Buffer.concat([leftover, chunk]);
      leftover = null;
      let offset = 0;
      while (buf.length - offset >= 2) {
        const b0 = buf[offset];
        const b1 = buf[offset + 1];
        const opcode = b0 & 0x0f;
        let length = b1 & 0x7f;
        let headerLength = 2;
        if (length === 126) {
          if (buf.length - offset < 4) break;
          length = buf.readUInt16BE(offset + 2);
          headerLength = 4;
        } else if (length === 127) {
          if (buf.length - offset < 10) break;
          length = Number(buf.readBigUInt64BE(offset + 2));
          headerLength = 10;
        }
        if (buf.length - offset < headerLength + length) break;
        const start = offset + headerLength;
        offset = start + length;
        if (opcode === OP_TEXT) {
          client.frames++;
          if (onFrame) onFrame(decode ? buf.toString('utf8', start, start + length) : undefined, client);
        } else if (opcode === OP_PING) {
          socket.write(maskedFrame(OP_PONG, buf.subarray(start, start + length)));
        } else if (opcode === OP_CLOSE) {
          closed = true;
          socket.end();
        }
      }
      if (offset < buf.length) leftover = buf.subarray(offset);
      // Keep the leftover small: copy it so the big chunk it came from can be freed.
      if (leftover !== null && leftover.length < 1024) leftover = Buffer.from(leftover);
      buf = null;
    };

    socket.on('data', (chunk) => {
      if (handshakeDone) {
        parse(chunk);
        return;
      }
      headerText += chunk.toString('latin1');
      const end = headerText.indexOf('\r\n\r\n');
      if (end === -1) {
        if (headerText.length > 16 * 1024) reject(new Error('handshake answer too long'));
        return;
      }
      const statusLine = headerText.slice(0, headerText.indexOf('\r\n'));
      if (!/^HTTP\/1\.1 101/.test(statusLine)) {
        socket.destroy();
        reject(new Error(`upgrade refused: ${statusLine} ${headerText.slice(end + 4, end + 300)}`));
        return;
      }
      handshakeDone = true;
      const rest = Buffer.from(headerText.slice(end + 4), 'latin1');
      headerText = '';
      resolve(client);
      if (rest.length > 0) parse(rest);
    });
    socket.once('error', (err) => {
      if (!handshakeDone) reject(err);
    });
    socket.once('close', () => {
      closed = true;
      onClose?.(client);
    });
    socket.once('connect', () => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: ${host}:${port}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${key}`,
        'Sec-WebSocket-Version: 13',
        ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
      ];
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
  });
}

function maskedFrame(opcode, payload) {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLength + 4 + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  const mask = (Math.random() * 0x100000000) >>> 0;
  frame.writeUInt32BE(mask, headerLength);
  const maskBytes = frame.subarray(headerLength, headerLength + 4);
  for (let i = 0; i < length; i++) frame[headerLength + 4 + i] = payload[i] ^ maskBytes[i & 3];
  return frame;
}

/** Opens `count` sockets with at most `parallel` handshakes in flight; `optionsFor(i)` gives each one's options. */
export async function connectMany(count, optionsFor, parallel = 100) {
  const clients = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      clients[i] = await connectWebSocket(optionsFor(i));
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
  return clients;
}

"""TLS: the same adieu connection, encrypted. The server loads its
certificate chain and key; the client trusts a CA file.

    python tls.py server --cert server.pem --key server.key --port 7443
    python tls.py client --cafile ca.pem --port 7443
"""

import argparse
import ssl

import trio

import adieu


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


def client_context(cafile: str) -> ssl.SSLContext:
    # Checks the certificate chain and the host name, as browsers do.
    return ssl.create_default_context(cafile=cafile)


async def echo(conn: adieu.Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def serve(port: int, context: ssl.SSLContext) -> None:
    async with adieu.open_tcp_server(
        echo, "localhost", port, ssl_context=context
    ) as server:
        print("TLS on port", server.port, flush=True)
        print(await adieu.run_until_signal(server), flush=True)


async def talk(port: int, context: ssl.SSLContext) -> adieu.Termination:
    # The TLS handshake is done before the block starts: a certificate that
    # does not verify raises here (trio.BrokenResourceError, whose
    # __cause__ is the ssl.SSLCertVerificationError).
    async with adieu.connect_tcp("localhost", port, ssl_context=context) as conn:
        await conn.send(b"hello over TLS")
        print(await conn.receive())
    assert conn.termination is not None
    return conn.termination


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=["server", "client"])
    parser.add_argument("--port", type=int, default=7443)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--cafile")
    args = parser.parse_args()
    if args.side == "server":
        trio.run(serve, args.port, server_context(args.cert, args.key))
    else:
        print(trio.run(talk, args.port, client_context(args.cafile)))

//! The server's half of `dns64` (`plugin/dns64.rs` decides and builds): when the
//! AAAA answer of an eligible query wants synthesis, the A question of the same
//! name goes down the block's chain (hosts, cache, upstreams, as CoreDNS's internal
//! lookup does), then the synthesised answer replaces the AAAA one before it goes
//! back through the plugins the query passed and out.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::miss::{self, Asked, Miss};
use super::shard::Shard;
use crate::limits;
use crate::plugin::{dns64, Flow, Origin, Request, Trail};
use crate::upstream::Transport;
use crate::wire;

/// What the A lookup needs of the client's query besides the query itself.
#[derive(Clone, Copy)]
pub struct Context {
    pub client: SocketAddr,
    pub transport: Transport,
    pub endpoint: usize,
    pub block: usize,
    pub zone: usize,
    pub max_len: usize,
}

impl Context {
    pub fn of(request: &Request<'_>) -> Context {
        Context {
            client: request.client,
            transport: request.transport,
            endpoint: request.endpoint,
            block: request.block,
            zone: request.zone,
            max_len: request.max_len,
        }
    }
}

/// An answer written at once that wants synthesis: a task synthesises it, sends it
/// back through the chain and replies (the query is answered later).
pub fn later<R: FnOnce(&[u8]) + 'static>(
    shard: &Rc<Shard>,
    request: &Request<'_>,
    trail: Trail,
    answer: &[u8],
    origin: Origin,
    reply: impl FnOnce() -> R,
) {
    let (shard, ctx, asked, answer) = (
        shard.clone(),
        Context::of(request),
        trail.with_query(request.query, Asked::new),
        answer.to_vec(),
    );
    let reply = reply();
    crate::engine::spawn_local(async move {
        let mut answer = replace(&shard, &ctx, &trail, &asked, answer).await;
        let chain = &shard.blocks[ctx.block].chain;
        chain.back(&shard.stats, &trail, &mut answer, origin);
        reply(&answer);
    })
    .detach();
}

/// The synthesised answer if `answer` wants one and the A lookup works, else
/// `answer` as it is.
pub async fn replace(
    shard: &Rc<Shard>,
    ctx: &Context,
    trail: &Trail,
    asked: &Asked,
    answer: Vec<u8>,
) -> Vec<u8> {
    let Some(config) = trail.dns64.filter(|c| dns64::wants_synthesis(c, &answer)) else {
        return answer;
    };
    let query = asked.query();
    let Some(a_answer) = lookup_a(shard, ctx, &query).await else {
        return answer;
    };
    match dns64::synthesize(&config, &query, &answer, &a_answer, ctx.max_len) {
        Some(synthesised) => {
            if let Some(d) = shard.blocks[ctx.block].chain.dns64() {
                d.count(ctx.endpoint);
            }
            synthesised
        }
        None => answer,
    }
}

/// The answer to the A question of `query`'s name, through the block's chain.
async fn lookup_a(shard: &Rc<Shard>, ctx: &Context, query: &wire::Query<'_>) -> Option<Vec<u8>> {
    let packet = dns64::a_query(query);
    let a_query = wire::parse_query(&packet).ok()?;
    let request = Request {
        query: &a_query,
        client: ctx.client,
        transport: ctx.transport,
        endpoint: ctx.endpoint,
        block: ctx.block,
        zone: ctx.zone,
        max_len: limits::MESSAGE_BYTES_MAX,
        now: Instant::now(),
        stats: &shard.stats,
    };
    let chain = &shard.blocks[ctx.block].chain;
    let mut trail = Trail::default();
    let mut out = vec![0u8; limits::MESSAGE_BYTES_MAX];
    match chain.serve(&request, &mut trail, &mut out) {
        Flow::Answer(len, _) => {
            out.truncate(len);
            Some(out)
        }
        Flow::Defer => {
            let miss = Miss {
                block_index: ctx.block,
                endpoint: ctx.endpoint,
                transport: ctx.transport,
                max_len: limits::MESSAGE_BYTES_MAX,
                meter: trail.meter,
            };
            let asked = trail.with_query(&a_query, Asked::new);
            let (mut answer, origin) = miss::answer(shard, &miss, &asked).await;
            chain.back(&shard.stats, &trail, &mut answer, origin);
            Some(answer)
        }
        Flow::Drop | Flow::Next | Flow::Rewritten => None,
    }
}

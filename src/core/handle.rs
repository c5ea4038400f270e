//! What a core does with its mailbox messages: operations on the
//! connections it owns, fan-outs to its members, and answers to queries.

use std::rc::Rc;

use super::conn::Conn;
use super::history::{Pending, Why};
use super::index::Audience;
use super::replay::session::What;
use super::Core;
use crate::cluster::frame::Frame;
use crate::mailbox::CoreMsg;
use crate::op::{ClientInfo, ConnAddr, ConnOp, ConnOutcome, GroupCount};
use crate::ws::message::notice_frame;
use crate::ws::CloseReason;
use crate::ws::Push;

impl Core {
    /// Executes one mailbox message on this core.
    pub fn handle(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Conn {
                addr,
                system,
                op:
                    ConnOp::Bind {
                        group,
                        user_id,
                        extend,
                        history: Some(ask),
                    },
                reply,
            } => match self.bind(addr, &system, &group, user_id, extend) {
                Ok(()) => self.recover(addr, (system, group.into()), ask, Why::Bind(reply)),
                Err(outcome) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(outcome);
                    }
                }
            },
            CoreMsg::Conn {
                addr,
                system,
                op,
                reply,
            } => {
                let outcome = self.conn_op(addr, &system, op);
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            CoreMsg::Many {
                system,
                targets,
                frame,
                reply,
            } => {
                let online = targets
                    .iter()
                    .filter(|a| self.deliver(**a, &system, &frame).is_ok())
                    .count();
                let _ = reply.send(online);
            }
            CoreMsg::Group {
                system,
                group,
                frame,
                stream,
            } => {
                let skip = match stream {
                    true => self.recovering(&system, &group),
                    false => Vec::new(),
                };
                self.fan_out_except(Audience::Group(&system, &group), &frame, &skip);
            }
            CoreMsg::Stamp {
                system,
                group,
                message,
                reply,
                hops,
            } => self.for_stream((system, group), Pending::Stamp { message, reply }, hops),
            CoreMsg::Read {
                system,
                group,
                ask,
                reader,
                hops,
            } => self.for_stream((system, group), Pending::Read { ask, reader }, hops),
            CoreMsg::Replay {
                addr,
                system,
                group,
                frames,
                position,
            } => self.on_replay(addr, (system, group), frames, position),
            CoreMsg::Page {
                system,
                group,
                since,
                limit,
                reply,
                hops,
            } => {
                let page = Pending::Page {
                    since,
                    limit,
                    reply,
                };
                self.for_stream((system, group), page, hops);
            }
            CoreMsg::Claim {
                system,
                group,
                by,
                reply,
            } => {
                let _ = reply.send(self.give((system, group), by));
            }
            CoreMsg::Adopt {
                system,
                group,
                stream,
                reply,
            } => {
                self.adopted((system, group), stream);
                let _ = reply.send(());
            }
            CoreMsg::User {
                system,
                user,
                frame,
                reply,
            } => {
                let reached = self.fan_out(Audience::User(&system, &user), &frame);
                let _ = reply.send(reached);
            }
            CoreMsg::System { system, frame } => {
                self.fan_out(Audience::System(&system), &frame);
            }
            CoreMsg::OnlineList {
                system,
                group,
                with_info,
                reply,
            } => {
                let _ = reply.send(self.online_list(&system, &group, with_info));
            }
            CoreMsg::GroupList { system, reply } => {
                let counts = self.index.group_counts(&system);
                let counts = counts.map(|(g, n)| GroupCount {
                    group: g.to_owned(),
                    count: n as u64,
                });
                let _ = reply.send(counts.collect());
            }
            CoreMsg::SystemAdded { id, entry, reply } => {
                self.systems.insert(Rc::from(id.as_ref()), entry);
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            CoreMsg::Peers(peers) => self.set_peers(peers),
            CoreMsg::NodeLost => self.close_all(CloseReason::NodeLost),
            CoreMsg::Shutdown => self.dispatch.shutdown.fire(),
            CoreMsg::Batch(msgs) => {
                self.node.count_out(self.id as usize, msgs.len());
                msgs.into_iter().for_each(|m| self.handle(m));
            }
            CoreMsg::Resume(handoff) => self.resume_handed_over(*handoff),
        }
    }

    pub(super) fn deliver(
        &mut self,
        addr: ConnAddr,
        system: &str,
        frame: &Push,
    ) -> Result<(), ConnOutcome> {
        self.owned(addr, system)?;
        let ask = self.keep_own(addr, frame);
        self.enqueue_push(addr, frame);
        if ask {
            let ping = self.ping(addr);
            self.enqueue(addr, ping);
        }
        Ok(())
    }

    /// The connection at `addr` if it is live and belongs to `system`; else
    /// why not (`Offline` or `Invalid`).
    pub(super) fn owned(&mut self, addr: ConnAddr, system: &str) -> Result<&mut Conn, ConnOutcome> {
        let conn = self.conns.get_mut(addr).ok_or(ConnOutcome::Offline)?;
        if &*conn.system != system {
            return Err(ConnOutcome::Invalid);
        }
        Ok(conn)
    }

    fn conn_op(&mut self, addr: ConnAddr, system: &str, op: ConnOp) -> ConnOutcome {
        let done = match op {
            ConnOp::Deliver(frame) => self.deliver(addr, system, &frame),
            ConnOp::Bind {
                group,
                user_id,
                extend,
                history: _,
            } => self.bind(addr, system, &group, user_id, extend),
            ConnOp::Unbind { group } => self.unbind(addr, system, &group),
            ConnOp::Close => self.close_by_api(addr, system),
            ConnOp::Info => {
                let info = self.owned(addr, system).map(|c| info(c));
                return info.map_or_else(|missing| missing, ConnOutcome::Info);
            }
        };
        done.map_or_else(|missing| missing, |()| ConnOutcome::Done)
    }

    fn close_by_api(&mut self, addr: ConnAddr, system: &str) -> Result<(), ConnOutcome> {
        self.owned(addr, system)?;
        self.close_conn(addr, CloseReason::ClosedByApi, Some(1000));
        Ok(())
    }

    fn bind(
        &mut self,
        addr: ConnAddr,
        system: &str,
        group: &str,
        user_id: String,
        extend: String,
    ) -> Result<(), ConnOutcome> {
        let max_groups = self.node.config.api.max_groups_per_client;
        let conn = self.owned(addr, system)?;
        let joined = conn.groups.iter().any(|g| &**g == group);
        if !joined && conn.groups.len() >= max_groups {
            return Err(ConnOutcome::TooManyGroups);
        }
        if !extend.is_empty() {
            conn.extend = extend.into();
        }
        if !user_id.is_empty() && *conn.user_id != *user_id {
            let new: Rc<str> = Rc::from(user_id);
            let old = std::mem::replace(&mut conn.user_id, new.clone());
            self.index.set_user(system, &old, &new, addr.slot);
            self.note_change(addr, What::User(old));
        }
        let group: Rc<str> = Rc::from(group);
        if self.index.join(system, &group, addr.slot) {
            self.note_change(addr, What::Joined(group.clone()));
            let conn = self.owned(addr, system)?;
            conn.join(group.clone());
            if self.node.config.ws.notices {
                let frame = self.notice(addr, true);
                self.group_notice(system, &group, frame);
            }
        }
        Ok(())
    }

    fn unbind(&mut self, addr: ConnAddr, system: &str, group: &str) -> Result<(), ConnOutcome> {
        let conn = self.owned(addr, system)?;
        let Some(i) = conn.groups.iter().position(|g| &**g == group) else {
            return Ok(());
        };
        let left = conn.leave(i);
        self.index.leave(system, group, addr.slot);
        self.note_change(addr, What::Left(left));
        if self.node.config.ws.notices {
            let frame = self.notice(addr, false);
            self.group_notice(system, group, frame);
        }
        Ok(())
    }

    /// The online/offline notice of the connection at `addr`, encoded once.
    fn notice(&mut self, addr: ConnAddr, online: bool) -> Push {
        let id = self.ids.next();
        match self.conns.get(addr) {
            Some(c) => {
                let frame = notice_frame(id, online, &c.client_id, &c.user_id, &c.extend);
                self.encode(frame)
            }
            None => Push::default(),
        }
    }

    /// Sends `frame` to the members of `group` on every core and every
    /// peer node, once.
    pub(super) fn group_notice(&mut self, system: &str, group: &str, frame: Push) {
        self.peer_broadcast(|| Frame::Notice {
            system: system.to_owned(),
            group: group.to_owned(),
            frame: frame.clone(),
        });
        self.tell_group(system, group, frame);
    }

    /// Sends the notice `frame` to the members of `group` on every core of
    /// this node; never refused (`tell_every_core`).
    pub(super) fn tell_group(&mut self, system: &str, group: &str, frame: Push) {
        let (system, group): (std::sync::Arc<str>, std::sync::Arc<str>) =
            (system.into(), group.into());
        self.tell_every_core(|| CoreMsg::Group {
            system: system.clone(),
            group: group.clone(),
            frame: frame.clone(),
            stream: false,
        });
    }

    fn online_list(&self, system: &str, group: &str, with_info: bool) -> Vec<ClientInfo> {
        let members = self.index.members(Audience::Group(system, group));
        members
            .filter_map(|slot| self.conns.at(slot).map(|(_, c)| c))
            .map(|c| {
                if with_info {
                    info(c)
                } else {
                    ClientInfo {
                        client_id: c.client_id.to_string(),
                        user_id: String::new(),
                        extend: String::new(),
                        groups: Vec::new(),
                        connect_time: 0,
                        detached: false,
                    }
                }
            })
            .collect()
    }
}

fn info(c: &Conn) -> ClientInfo {
    ClientInfo {
        client_id: c.client_id.to_string(),
        user_id: c.user_id.to_string(),
        extend: c.extend.to_string(),
        groups: c.groups.iter().map(|g| g.to_string()).collect(),
        connect_time: u64::from(c.connect_time),
        detached: c.stream.is_none(),
    }
}

//! The host's avahi-daemon, over the system D-Bus: each service lives in
//! an entry group of its own (so a name collision renames only that
//! queue), which avahi announces, defends and withdraws when this process
//! disconnects. Only the handful of calls the advertiser needs.

use futures_util::StreamExt;
use zbus::proxy::SignalStream;
use zbus::{Connection, OwnedObjectPath, Proxy};

use super::records::Service;

const AVAHI: &str = "org.freedesktop.Avahi";
const SERVER: &str = "org.freedesktop.Avahi.Server";
const ENTRY_GROUP: &str = "org.freedesktop.Avahi.EntryGroup";
/// `AVAHI_PROTO_UNSPEC`: announce over IPv4 and IPv6.
const PROTO_UNSPEC: i32 = -1;
/// `AVAHI_IF_UNSPEC`: every interface avahi serves.
pub const EVERY_INTERFACE: i32 = -1;

/// A connection to avahi.
pub struct Avahi {
    connection: Connection,
    server: Proxy<'static>,
}

/// What avahi says of an entry group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupState {
    /// Being probed, or waiting for the server.
    Registering,
    /// Announced: workstations see it.
    Established,
    /// Another host has the name.
    Collision,
    /// avahi gave up on it.
    Failure(String),
}

impl GroupState {
    fn from_avahi(state: i32, error: String) -> GroupState {
        match state {
            2 => GroupState::Established,
            3 => GroupState::Collision,
            4 => GroupState::Failure(error),
            _ => GroupState::Registering,
        }
    }
}

/// One published service, withdrawn when dropped with its connection or
/// freed.
pub struct Group {
    proxy: Proxy<'static>,
    states: SignalStream<'static>,
}

impl Avahi {
    /// Connects to the system bus and checks that avahi answers there.
    pub async fn connect() -> zbus::Result<Avahi> {
        let connection = Connection::system().await?;
        let server = Proxy::new_owned(connection.clone(), AVAHI, "/", SERVER).await?;
        let _version: String = server.call("GetVersionString", &()).await?;
        Ok(Avahi { connection, server })
    }

    /// Signals each time avahi leaves or joins the bus (a restart
    /// withdraws every group).
    pub async fn owner_changes(&self) -> zbus::Result<SignalStream<'static>> {
        let bus = Proxy::new_owned(
            self.connection.clone(),
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
        )
        .await?;
        bus.receive_signal_with_args("NameOwnerChanged", &[(0, AVAHI)])
            .await
    }

    /// The host's name as avahi announces it (`box.local`).
    pub async fn host_name(&self) -> zbus::Result<String> {
        self.server.call("GetHostNameFqdn", &()).await
    }

    /// The name avahi suggests after `name` collided (`name #2`).
    pub async fn alternative_name(&self, name: &str) -> zbus::Result<String> {
        self.server
            .call("GetAlternativeServiceName", &(name,))
            .await
    }

    /// Publishes `service` on `interface` (an index, or
    /// [`EVERY_INTERFACE`]).
    pub async fn publish(&self, service: &Service, interface: i32) -> zbus::Result<Group> {
        let path: OwnedObjectPath = self.server.call("EntryGroupNew", &()).await?;
        let proxy = Proxy::new_owned(self.connection.clone(), AVAHI, path, ENTRY_GROUP).await?;
        // Subscribed before the commit, so no state change is missed.
        let states = proxy.receive_signal("StateChanged").await?;
        let txt: Vec<Vec<u8>> = service.txt.iter().map(|t| t.as_bytes().to_vec()).collect();
        proxy
            .call::<_, _, ()>(
                "AddService",
                &(
                    interface,
                    PROTO_UNSPEC,
                    0u32,
                    service.name.as_str(),
                    service.service_type,
                    "",
                    "",
                    service.port,
                    txt,
                ),
            )
            .await?;
        for subtype in &service.subtypes {
            proxy
                .call::<_, _, ()>(
                    "AddServiceSubtype",
                    &(
                        interface,
                        PROTO_UNSPEC,
                        0u32,
                        service.name.as_str(),
                        service.service_type,
                        "",
                        subtype.as_str(),
                    ),
                )
                .await?;
        }
        proxy.call::<_, _, ()>("Commit", &()).await?;
        Ok(Group { proxy, states })
    }
}

/// Whether avahi refused a call because the name is taken on this host.
pub fn is_collision(error: &zbus::Error) -> bool {
    matches!(error, zbus::Error::MethodError(name, _, _) if name.as_str() == "org.freedesktop.Avahi.CollisionError")
}

impl Group {
    /// The group's next state; `None` once avahi or the bus is gone.
    pub async fn next_state(&mut self) -> Option<GroupState> {
        let message = self.states.next().await?;
        let (state, error): (i32, String) = message.body().deserialize().ok()?;
        Some(GroupState::from_avahi(state, error))
    }

    /// Withdraws the service.
    pub async fn free(self) {
        // Gone with the connection anyway if this fails.
        let _ = self.proxy.call::<_, _, ()>("Free", &()).await;
    }
}

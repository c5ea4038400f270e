//! The `/api/*` routes by name.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Register,
    SendToClient,
    SendToClients,
    SendToGroup,
    SendToUser,
    SendToSystem,
    BindToGroup,
    UnbindFromGroup,
    GetOnlineList,
    GetGroupList,
    IsOnline,
    GetClientInfo,
    CloseClient,
    GetGroupHistory,
}

impl Route {
    pub const ALL: [Route; 14] = [
        Self::Register,
        Self::SendToClient,
        Self::SendToClients,
        Self::SendToGroup,
        Self::SendToUser,
        Self::SendToSystem,
        Self::BindToGroup,
        Self::UnbindFromGroup,
        Self::GetOnlineList,
        Self::GetGroupList,
        Self::IsOnline,
        Self::GetClientInfo,
        Self::CloseClient,
        Self::GetGroupHistory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::SendToClient => "send_to_client",
            Self::SendToClients => "send_to_clients",
            Self::SendToGroup => "send_to_group",
            Self::SendToUser => "send_to_user",
            Self::SendToSystem => "send_to_system",
            Self::BindToGroup => "bind_to_group",
            Self::UnbindFromGroup => "unbind_from_group",
            Self::GetOnlineList => "get_online_list",
            Self::GetGroupList => "get_group_list",
            Self::IsOnline => "is_online",
            Self::GetClientInfo => "get_client_info",
            Self::CloseClient => "close_client",
            Self::GetGroupHistory => "get_group_history",
        }
    }

    /// The route for a request path such as `/api/send_to_client`.
    pub fn from_path(path: &str) -> Option<Route> {
        let name = path.strip_prefix("/api/")?;
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_round_trips_through_its_path() {
        for r in Route::ALL {
            assert_eq!(Route::from_path(&format!("/api/{}", r.name())), Some(r));
        }
        assert_eq!(Route::from_path("/api/nope"), None);
        assert_eq!(Route::from_path("/send_to_client"), None);
    }
}

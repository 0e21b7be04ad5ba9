//! Which group a process belongs to, for metric labels.

use crate::config::Grouping;

/// The group that collects everything beyond the top groups.
pub const OTHER_GROUP: &str = "other";

/// The innermost systemd unit (`*.service`, `*.scope`) of a cgroup path.
pub fn unit_of(cgroup: &str) -> Option<&str> {
    cgroup
        .rsplit('/')
        .find(|part| part.ends_with(".service") || part.ends_with(".scope"))
}

/// The process's group under `grouping`: its systemd unit (or its comm when
/// it has none), its comm, or its cgroup path.
pub fn group_name(grouping: Grouping, comm: &str, cgroup: Option<&str>) -> String {
    let comm = if comm.is_empty() { "unknown" } else { comm };
    match grouping {
        Grouping::Unit => cgroup.and_then(unit_of).unwrap_or(comm).to_owned(),
        Grouping::Comm => comm.to_owned(),
        Grouping::Cgroup => cgroup.filter(|c| !c.is_empty()).unwrap_or("/").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_come_from_the_cgroup_else_the_comm() {
        let g = |cg| group_name(Grouping::Unit, "sshd", cg);
        assert_eq!(g(Some("/system.slice/ssh.service")), "ssh.service");
        assert_eq!(
            g(Some("/user.slice/user-0.slice/session-3.scope")),
            "session-3.scope"
        );
        assert_eq!(
            g(Some("/system.slice/docker-1.scope/init.service")),
            "init.service"
        );
        assert_eq!(g(Some("/")), "sshd");
        assert_eq!(g(None), "sshd");
        assert_eq!(
            group_name(Grouping::Comm, "bash", Some("/system.slice/x.service")),
            "bash"
        );
        assert_eq!(
            group_name(Grouping::Cgroup, "bash", Some("/system.slice/x.service")),
            "/system.slice/x.service"
        );
        assert_eq!(group_name(Grouping::Cgroup, "bash", None), "/");
        assert_eq!(group_name(Grouping::Unit, "", None), "unknown");
    }
}

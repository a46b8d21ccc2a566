//! `sync=rediss://` on an nginx built without SSL: refused when the
//! configuration is read, so nothing below runs.

use core::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::TcpStream;

use nginx_sys::{ngx_conf_t, ngx_connection_t, ngx_str_t};

pub struct Tls(Infallible);

impl Tls {
    pub fn new(
        _cf: &mut ngx_conf_t,
        _ca: &str,
        _cert_and_key: Option<(&str, &str)>,
    ) -> Result<Tls, String> {
        Err("\"sync=rediss://\" needs nginx built with SSL".into())
    }

    /// # Safety
    /// Never called: no `Tls` exists.
    pub unsafe fn start(
        &self,
        _c: *mut ngx_connection_t,
        _host: &ngx_str_t,
    ) -> Result<bool, String> {
        match self.0 {}
    }

    /// # Safety
    /// Nothing to check without SSL.
    pub unsafe fn verified(_c: *mut ngx_connection_t) -> Result<(), String> {
        Ok(())
    }

    /// # Safety
    /// Nothing to end without SSL.
    pub unsafe fn shutdown(_c: *mut ngx_connection_t) {}

    pub fn connect_blocking(&self, _socket: TcpStream, _host: &str) -> Result<BlockingTls, String> {
        match self.0 {}
    }
}

pub struct BlockingTls(Infallible);

impl BlockingTls {
    pub fn socket(&self) -> &TcpStream {
        match self.0 {}
    }
}

impl Read for BlockingTls {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        match self.0 {}
    }
}

impl Write for BlockingTls {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        match self.0 {}
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.0 {}
    }
}
